import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaderElector } from '../../src/ha/leader-elector.js';
import { RedisLeaderLease } from '../../src/ha/redis-leader-lease.js';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { createScratchDatabase } from '../crash/scratch-database.js';
import { deleteRedisPrefix, requireRedis, testRedisUrl } from '../helpers/require-redis.js';
import { PG_URL, TenancyPlatform, storeKinds } from '../tenancy/tenancy-harness.js';

/**
 * Issue 7, "a leader lease with fencing": the token of each term is recorded in the
 * store, and the controller's writes carrying an older token are refused, so a leader
 * that was paused past its TTL cannot write once the next one has taken over, and
 * steps down instead of crashing.
 */

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const hasRedis = await requireRedis();
const kinds = await storeKinds();

interface ChildEvent {
  event: string;
  token?: number;
  recordedToken?: number;
  code?: string;
  n?: number;
  stillBelievesItLeads?: boolean;
  message?: string;
}

async function waitUntil<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number, what: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await sleep(20);
  }
}

describe.skipIf(!hasRedis).each(kinds)('leader fencing on %s', (kind) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err: unknown) => console.warn('cleanup failed', err));
  });

  /** A fresh store both replicas share: a scratch PostgreSQL database, or an SQLite file. */
  async function sharedStore(): Promise<{ url: string; dataDir: string; open: () => Promise<Store> }> {
    const dataDir = await mkdtemp(join(tmpdir(), 'ap-fencing-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    let url = '';
    if (kind === 'postgres') {
      const db = await createScratchDatabase(PG_URL);
      cleanups.push(() => db.drop());
      url = db.url;
    }
    return {
      url,
      dataDir,
      open: async () => {
        const store = await openStore(url, dataDir);
        cleanups.push(() => store.close());
        return store;
      },
    };
  }

  const newPrefix = (): string => {
    const prefix = `ap-test-${randomBytes(6).toString('hex')}:`;
    cleanups.push(() => deleteRedisPrefix(prefix).then(() => undefined));
    return prefix;
  };

  it('a leader paused past its TTL: the next leader takes over, the paused one\'s write is refused, and it steps down without crashing', async () => {
    const ttlMs = 1_000;
    const shared = await sharedStore();
    const store = await shared.open();
    const { agent } = await store.createAgent({
      id: randomUUID(),
      tenantId: 'default',
      name: 'fenced',
      labels: {},
      spec: { image: 'sim/sleep', command: ['sleep', 'infinity'], args: [], env: {}, nodeSelector: {}, tolerations: [], resources: { cpuMillicores: 10, memoryMiB: 16, gpu: 0, cpuLimitMillicores: 10, memoryLimitMiB: 16 }, restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0 },
      desired: 'running',
      status: { phase: 'Pending', restarts: 0, phaseSince: Date.now() },
      createdAt: Date.now(),
    });
    const prefix = newPrefix();
    const resumeFile = join(shared.dataDir, 'resume');

    const child = spawn(process.execPath, ['--import', 'tsx', 'test/ha/paused-leader-process.ts'], {
      cwd: REPO_ROOT,
      env: { ...process.env, STORE_URL: shared.url, DATA_DIR: shared.dataDir, REDIS_URL: testRedisUrl, REDIS_PREFIX: prefix, LEASE_TTL_MS: String(ttlMs), AGENT_ID: agent.id, RESUME_FILE: resumeFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    const events: ChildEvent[] = [];
    let buffered = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      buffered += b.toString();
      let end: number;
      while ((end = buffered.indexOf('\n')) >= 0) {
        events.push(JSON.parse(buffered.slice(0, end)) as ChildEvent);
        buffered = buffered.slice(end + 1);
      }
    });
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
    const seen = (name: string): ChildEvent | undefined => events.find((e) => e.event === name);
    const state = (): string => `child events ${JSON.stringify(events)}; stderr: ${stderr}`;

    // The first replica leads, writes three times with its token, and freezes.
    const paused = await waitUntil(() => seen('paused'), 60_000, state);
    const firstToken = seen('leading')!.token!;
    expect(paused.token).toBe(firstToken);

    // The second replica: its lease can be had once the paused one's lapses (one TTL).
    let secondToken: number | undefined;
    let secondWrote = false;
    const secondLease = new RedisLeaderLease({ url: testRedisUrl, prefix, ttlMs });
    cleanups.push(() => secondLease.close());
    const second = new LeaderElector({
      lease: secondLease,
      replicaId: 'second',
      fence: store,
      lead: async (_signal, token) => {
        secondToken = token;
        const current = (await store.getAgent(agent.id))!;
        await store.updateAgentWithEvents(current, { labels: { writer: 'second' }, updatedAt: Date.now() }, [], token);
        secondWrote = true;
      },
    });
    cleanups.push(() => second.stop());
    second.start();
    await waitUntil(() => (secondWrote ? true : undefined), 10 * ttlMs, () => `the second replica to lead and write; ${state()}`);
    expect(secondToken).toBeGreaterThan(firstToken);
    // Still frozen: it has not noticed anything.
    expect(seen('resumed')).toBeUndefined();

    await writeFile(resumeFile, '');
    const fenced = await waitUntil(() => seen('fenced'), 15_000, state);
    // Nothing ran while it was frozen: it came back still believing it leads, and wrote.
    expect(seen('resumed')?.stillBelievesItLeads).toBe(true);
    expect(fenced).toMatchObject({ token: firstToken, recordedToken: secondToken, code: 'LEADER_FENCED_OUT' });
    await waitUntil(() => seen('term-ended'), 15_000, state);
    // Its post-pause write landed nowhere: the record is the second leader's.
    const stored = await store.getAgent(agent.id);
    expect(stored?.labels).toEqual({ writer: 'second' });
    expect(stored?.version).toBe(agent.version + 3 + 1);
    expect(events.filter((e) => e.event === 'wrote')).toHaveLength(3);
    expect(events.filter((e) => e.event === 'error')).toEqual([]);
    expect(second.isLeader()).toBe(true);

    // Stepped down, not crashed: still running, and it stops cleanly when told.
    await sleep(300);
    expect(child.exitCode, state()).toBeNull();
    child.kill('SIGTERM');
    expect(await exited, state()).toBe(0);
    expect(seen('exited')).toBeDefined();
  }, 120_000);

  it('a platform whose token the store has seen surpassed steps down at its first fenced write, catches its lease counter up, leads again, and converges', async () => {
    const prefix = newPrefix();
    const platform = await TenancyPlatform.start(kind, {
      AGENT_PLATFORM_REDIS_URL: testRedisUrl,
      AGENT_PLATFORM_REDIS_PREFIX: prefix,
      AGENT_PLATFORM_LEASE_TTL_MS: '1000',
      AGENT_PLATFORM_REPLICA_ID: 'lagging',
    });
    cleanups.push(() => platform.close());
    const leaderToken = async (): Promise<number | undefined> => {
      const r = await platform.expectStatus<{ leader: boolean; fencingToken?: number }>(200, 'GET', '/api/v1/leader');
      return r.json.leader ? r.json.fencingToken : undefined;
    };
    const first = await waitUntil(leaderToken, 15_000, () => 'the platform to lead');
    // As if another replica had led with a much newer token (its lease state since lost
    // with a Redis restore): this replica's lease is valid, its token is not.
    const newer = first + 10;
    expect(await platform.platform.store.recordFencingToken(newer)).toBe(newer);
    expect(platform.platform.isLeader()).toBe(true);

    const created = await platform.createAgent(platform.adminToken, { name: 'after-takeover', resources: { cpu: '10m', memory: '16Mi' } });
    expect(created.status, created.text).toBe(201);
    const id = (created.json as { id: string }).id;
    // Its first write for the agent is refused, it steps down, its next campaign gets a
    // token past the store's (the counter was advanced), and that term converges the agent.
    await platform.waitPhase(platform.adminToken, id, 'Running', 30_000);
    const now = await leaderToken();
    expect(now).toBeGreaterThan(newer);
    const events = await platform.expectStatus<{ items: { reason: string }[] }>(200, 'GET', `/api/v1/events?agent=${id}`);
    expect(events.json.items.map((e) => e.reason)).toContain('Started');
  }, 60_000);
});
