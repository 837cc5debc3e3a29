import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/domain/clock.js';
import type { EgressAuditRecord } from '../../src/egress/egress-audit.js';
import { SecretCipher } from '../../src/security/secret-cipher.js';
import { SecretService } from '../../src/security/secret-service.js';
import { StoreAuditSink } from '../../src/security/store-audit-sink.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { Store } from '../../src/store/store.js';

const url = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function postgresUp(): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error(`CI=true but PostgreSQL at ${url} is unreachable`);
    return false;
  }
}
const hasPostgres = await postgresUp();

const record = (agentId: string | null, host: string, decision: 'allow' | 'deny', time: number): EgressAuditRecord => ({
  time,
  agentId,
  tenantId: agentId ? 't1' : null,
  sourceIp: '172.18.0.2',
  method: 'CONNECT',
  host,
  port: 443,
  ...(decision === 'allow' ? { resolvedIp: '203.0.113.5', rule: `${host}:443`, sni: host, httpStatus: 200 } : { detail: 'not in allowlist', httpStatus: 403 }),
  decision,
  reason: decision === 'allow' ? 'allowed' : 'not-in-allowlist',
  bytesUp: decision === 'allow' ? 1234 : 0,
  bytesDown: decision === 'allow' ? 5_000_000_000 : 0,
  durationMs: 12,
});

const schemas: string[] = [];
const dirs: string[] = [];
const adapters: { name: string; enabled: boolean; open: () => Store }[] = [
  {
    name: 'sqlite',
    enabled: true,
    open: () => {
      const dir = mkdtempSync(join(tmpdir(), 'sec-store-'));
      dirs.push(dir);
      return openSqliteStore(join(dir, 'db.sqlite'));
    },
  },
  {
    name: 'postgres',
    enabled: hasPostgres,
    open: () => {
      const schema = `t_${randomBytes(6).toString('hex')}`;
      schemas.push(schema);
      return openPostgresStore(url, { schema });
    },
  },
];

afterAll(async () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  if (schemas.length === 0) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  for (const s of schemas) await client.query(`drop schema if exists "${s}" cascade`);
  await client.end();
});

for (const adapter of adapters) {
  describe.skipIf(!adapter.enabled)(`secrets and egress audit in the ${adapter.name} store`, () => {
    it('keeps secrets sealed, scoped, replaceable and deletable; rotation re-seals', async () => {
      const store = adapter.open();
      await store.migrate();
      try {
        const oldKey = randomBytes(32);
        const service = new SecretService(store, new SecretCipher(oldKey), systemClock);
        expect((await service.put('t1', 'openai', 'v1')).created).toBe(true);
        // Long enough that random ciphertext (base64) cannot contain it by chance ("v2" once did).
        const second = 'sk-second-value-4f9c2e7a1b';
        expect((await service.put('t1', 'openai', second)).created).toBe(false);
        await service.put('t2', 'openai', 'other-tenant');
        const stored = await store.getSecret('t1', 'openai');
        expect(stored?.ciphertext).not.toContain(second);
        expect(stored?.ciphertext).not.toContain(Buffer.from(second).toString('base64').slice(0, 20));
        expect(await service.resolveEnv('t1', { KEY: { name: 'openai' } })).toEqual({ KEY: second });
        expect(await service.resolveEnv('t2', { KEY: { name: 'openai' } })).toEqual({ KEY: 'other-tenant' });
        expect((await service.list('t1')).map((s) => s.name)).toEqual(['openai']);
        // Rotation: new key current, old decrypt-only; re-seal; then the old key can go.
        const newKey = randomBytes(32);
        const rotating = new SecretService(store, new SecretCipher(newKey, [oldKey]), systemClock);
        expect(await rotating.reencryptAll()).toBe(2);
        expect(await rotating.reencryptAll()).toBe(0);
        const after = new SecretService(store, new SecretCipher(newKey), systemClock);
        expect(await after.resolveEnv('t1', { KEY: { name: 'openai' } })).toEqual({ KEY: second });
        await service.delete('t1', 'openai');
        await expect(service.delete('t1', 'openai')).rejects.toMatchObject({ code: 'SECRET_NOT_FOUND' });
        await expect(after.resolveEnv('t1', { KEY: { name: 'openai' } })).rejects.toMatchObject({ code: 'SECRET_NOT_FOUND' });
      } finally {
        await store.close();
      }
    });

    it('appends egress audit in batches, lists by agent oldest first with paging, prunes by time', async () => {
      const store = adapter.open();
      await store.migrate();
      try {
        const sink = new StoreAuditSink(store, { flushIntervalMs: 10_000, batchSize: 3 });
        sink.record(record('a1', 'api.openai.com', 'allow', 1_000));
        sink.record(record('a1', 'evil.example', 'deny', 2_000));
        sink.record(record(null, 'x.example', 'deny', 3_000));
        sink.record(record('a2', 'pypi.org', 'allow', 4_000));
        await sink.close();
        const a1 = await store.listEgressAudit({ agentId: 'a1' });
        expect(a1.map((r) => [r.host, r.decision, r.reason])).toEqual([
          ['api.openai.com', 'allow', 'allowed'],
          ['evil.example', 'deny', 'not-in-allowlist'],
        ]);
        const { id: _id, ...first } = a1[0]!;
        expect(first).toEqual(record('a1', 'api.openai.com', 'allow', 1_000));
        const page = await store.listEgressAudit({ agentId: 'a1', afterId: a1[0]!.id, limit: 1 });
        expect(page.map((r) => r.host)).toEqual(['evil.example']);
        expect(await store.listEgressAudit({ agentId: 'a1', tenantId: 'other' })).toEqual([]);
        expect(await store.pruneEgressAudit(2_500)).toBe(2);
        expect((await store.listEgressAudit({})).map((r) => r.host)).toEqual(['x.example', 'pypi.org']);
      } finally {
        await store.close();
      }
    });
  });
}
