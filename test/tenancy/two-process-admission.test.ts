import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createScratchDatabase, probePostgres, type ScratchDatabase } from '../crash/scratch-database.js';
import { freePort, startPlatformProcess, type PlatformProcess } from '../crash/platform-process.js';
import { PG_URL, REDIS_URL, SIMULATED_NODES, isCI } from './tenancy-harness.js';

const pgUp = await probePostgres(PG_URL);
const redisUp = await new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0 }).connect().then(
  () => true,
  () => false,
);
if (isCI && (!pgUp.ok || !redisUp)) throw new Error(`two-process admission needs PostgreSQL at ${PG_URL} and Redis at ${REDIS_URL} (CI=true forbids skipping)`);

/**
 * Two `agent-platform serve` processes on one PostgreSQL database (and one Redis, so that
 * only one of them runs the controllers): admission is exact across processes.
 */
describe.skipIf(!pgUp.ok || !redisUp)('admission across two platform processes sharing PostgreSQL', () => {
  let db: ScratchDatabase;
  const procs: PlatformProcess[] = [];
  const token = `adm_${randomBytes(16).toString('hex')}`;
  const prefix = `ap-test-${randomBytes(4).toString('hex')}:`;

  beforeAll(async () => {
    db = await createScratchDatabase(PG_URL);
    const env = {
      AGENT_PLATFORM_DATABASE_URL: db.url,
      AGENT_PLATFORM_ADMIN_TOKEN: token,
      AGENT_PLATFORM_NODES: SIMULATED_NODES,
      AGENT_PLATFORM_REDIS_URL: REDIS_URL,
      AGENT_PLATFORM_REDIS_PREFIX: prefix,
      AGENT_PLATFORM_LOG_LEVEL: 'warn',
      AGENT_PLATFORM_RATE_LIMIT_RPS: '100000',
      AGENT_PLATFORM_RATE_LIMIT_BURST: '100000',
      AGENT_PLATFORM_DATA_DIR: `/tmp/ap-two-proc-${randomBytes(4).toString('hex')}`,
    };
    // Started together: they also race on the migrations.
    const started = await Promise.all([0, 1].map(async () => startPlatformProcess(env, await freePort(), 90_000)));
    procs.push(...started);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await db?.drop();
    const r = new Redis(REDIS_URL);
    const keys = await r.keys(`${prefix}*`);
    if (keys.length) await r.del(...keys);
    r.disconnect();
  }, 60_000);

  const call = async (proc: PlatformProcess, method: string, path: string, body?: unknown, auth = token): Promise<{ status: number; json: any }> => {
    const res = await fetch(proc.baseUrl + path, { method, headers: { authorization: `Bearer ${auth}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };

  it('100 parallel creates split over both processes against room for 10 admit exactly 10', async () => {
    const [a, b] = procs as [PlatformProcess, PlatformProcess];
    expect((await call(a, 'POST', '/api/v1/tenants', { id: 'shared', quota: { memory: '640Mi' } })).status).toBe(201);
    const key = (await call(b, 'POST', '/api/v1/tenants/shared/keys', { name: 'm', role: 'member' })).json.key as string;
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => call(i % 2 === 0 ? a : b, 'POST', '/api/v1/agents', { name: `x-${i}`, image: 'sim/x', resources: { memory: '64Mi' } }, key)),
    );
    const created = results.filter((r) => r.status === 201);
    expect(created).toHaveLength(10);
    expect(results.filter((r) => r.status === 403 && r.json.error.code === 'QUOTA_EXCEEDED')).toHaveLength(90);
    // Both processes read the same exact counters.
    for (const p of procs) {
      const q = (await call(p, 'GET', '/api/v1/tenants/shared/quota')).json;
      expect(q.resources.memoryMiB).toEqual({ limit: 640, used: 640, free: 0 });
      expect(q.resources.agents.used).toBe(10);
    }
    // A key revoked through one process is refused by the other at once.
    const keyId = key.split('_')[1]!;
    expect((await call(a, 'DELETE', `/api/v1/tenants/shared/keys/${keyId}`)).status).toBe(200);
    expect((await call(b, 'GET', '/api/v1/whoami', undefined, key)).status).toBe(401);
  }, 60_000);
});
