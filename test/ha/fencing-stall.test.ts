import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaderElector } from '../../src/ha/leader-elector.js';
import type { LeaderLease } from '../../src/ha/leader-lease.js';
import { RedisLeaderLease } from '../../src/ha/redis-leader-lease.js';
import { fencedWriteBeginSql } from '../../src/store/kysely-store.js';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { createScratchDatabase } from '../crash/scratch-database.js';
import { deleteRedisPrefix, requireRedis, testRedisUrl } from '../helpers/require-redis.js';
import { PG_URL, storeKinds } from '../tenancy/tenancy-harness.js';

/**
 * PostgreSQL: a fenced write holds the fence lock shared for its transaction, and a new
 * leader's record takes it exclusively. An old leader stalled in the middle of one (its
 * process paused, its host cut off from the database) must not keep the new leader from
 * recording its token, nor leave it holding the lease without leading: the server ends
 * the stalled transaction after the fencing timeout idle, a record waiting longer than
 * that fails, and the elector gives a record attempt one TTL before campaigning again.
 * The stalled write is played by a separate connection that begins exactly as the store
 * begins a fenced write (fencedWriteBeginSql) and then goes quiet.
 */

const hasRedis = await requireRedis();
// Under CI=true PostgreSQL is in the list whether or not it answers: the test then fails.
const hasPostgres = (await storeKinds()).includes('postgres');

const TTL_MS = 1_000;

async function waitUntil<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** The real Redis lease, counting campaigns won. */
class CountingLease implements LeaderLease {
  readonly kind = 'counting';
  acquired = 0;
  constructor(private readonly inner: LeaderLease) {}
  get ttlMs(): number {
    return this.inner.ttlMs;
  }
  async acquire(id: string, s?: AbortSignal) {
    const token = await this.inner.acquire(id, s);
    if (token !== undefined) this.acquired++;
    return token;
  }
  renew(id: string, t: number, s?: AbortSignal) {
    return this.inner.renew(id, t, s);
  }
  release(id: string, t: number) {
    return this.inner.release(id, t);
  }
  advanceFencingToken(atLeast: number) {
    return this.inner.advanceFencingToken(atLeast);
  }
  holder(s?: AbortSignal) {
    return this.inner.holder(s);
  }
  close() {
    return this.inner.close();
  }
}

describe.skipIf(!hasRedis || !hasPostgres)('leader fencing with a stalled fenced write (PostgreSQL)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err: unknown) => console.warn('cleanup failed', err));
  });

  async function setUp(fencingTimeoutMs: number): Promise<{ store: Store; url: string; lease: CountingLease; agentId: string }> {
    const dataDir = await mkdtemp(join(tmpdir(), 'ap-fencing-stall-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const db = await createScratchDatabase(PG_URL);
    cleanups.push(() => db.drop());
    const store = await openStore(db.url, dataDir, { fencingTimeoutMs });
    cleanups.push(() => store.close());
    const prefix = `ap-test-${randomBytes(6).toString('hex')}:`;
    cleanups.push(() => deleteRedisPrefix(prefix).then(() => undefined));
    const lease = new CountingLease(new RedisLeaderLease({ url: testRedisUrl, prefix, ttlMs: TTL_MS }));
    cleanups.push(() => lease.close());
    const { agent } = await store.createAgent({
      id: randomUUID(),
      tenantId: 'default',
      name: 'stalled',
      labels: {},
      spec: { image: 'sim/sleep', command: ['sleep', 'infinity'], args: [], env: {}, nodeSelector: {}, tolerations: [], resources: { cpuMillicores: 10, memoryMiB: 16, gpu: 0, cpuLimitMillicores: 10, memoryLimitMiB: 16 }, restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0 },
      desired: 'running',
      status: { phase: 'Pending', restarts: 0, phaseSince: Date.now() },
      createdAt: Date.now(),
    });
    return { store, url: db.url, lease, agentId: agent.id };
  }

  /** A connection in the middle of a fenced write: begun as the store begins one, one write done, then silent. */
  async function stalledFencedWrite(url: string, agentId: string, fencingTimeoutMs: number, extraSql = ''): Promise<{ client: pg.Client; errors: Error[] }> {
    const client = new pg.Client({ connectionString: url });
    const errors: Error[] = [];
    // The server ending the session arrives as an 'error' event while no query runs.
    client.on('error', (err) => errors.push(err));
    await client.connect();
    cleanups.push(() => client.end().catch(() => undefined));
    await client.query(fencedWriteBeginSql('begin', fencingTimeoutMs) + extraSql);
    await client.query(`update agents set labels = '{"writer":"stalled"}' where id = $1`, [agentId]);
    return { client, errors };
  }

  it('the new leader records its token once the server ends the stalled write, within a bound; not leader before; the stalled write cannot commit', async () => {
    const fencingTimeoutMs = 1_000;
    const { store, url, lease, agentId } = await setUp(fencingTimeoutMs);
    const stalled = await stalledFencedWrite(url, agentId, fencingTimeoutMs);
    const stalledSinceMs = Date.now();

    let ledWith: number | undefined;
    let ledAtMs = 0;
    const elector = new LeaderElector({
      lease,
      replicaId: 'new-leader',
      fence: store,
      lead: (_signal, token) => {
        ledWith = token;
        ledAtMs = Date.now();
      },
    });
    cleanups.push(() => elector.stop());
    elector.start();
    await waitUntil(() => (lease.acquired > 0 ? true : undefined), 5_000, 'the lease to be won');
    // The record waits for the stalled write: holding the lease is not leading yet.
    await sleep(Math.floor(fencingTimeoutMs / 2));
    expect(ledWith).toBeUndefined();
    expect(elector.isLeader()).toBe(false);
    expect(elector.term()).toBeUndefined();

    const token = await waitUntil(() => ledWith, fencingTimeoutMs + 4 * TTL_MS, 'the new leader to record its token and lead');
    // Bounded by the fencing timeout (plus a campaign or two), not by TCP keepalive.
    expect(ledAtMs - stalledSinceMs).toBeLessThan(fencingTimeoutMs + 4 * TTL_MS);
    expect(elector.isLeader()).toBe(true);
    await store.assertFencingToken(token);

    // The stalled write comes back: its transaction is gone, its update with it.
    await expect(stalled.client.query('commit')).rejects.toThrow();
    expect(stalled.errors.map((e) => e.message).join('; ')).toMatch(/idle-in-transaction timeout/);
    expect((await store.getAgent(agentId))!.labels).toEqual({});
    // And the new leader's fenced writes go through.
    const current = (await store.getAgent(agentId))!;
    await store.updateAgentWithEvents(current, { labels: { writer: 'new-leader' }, updatedAt: Date.now() }, [], token);
    expect((await store.getAgent(agentId))!.labels).toEqual({ writer: 'new-leader' });
  }, 30_000);

  it('a record blocked past the fencing timeout fails; the elector ends such terms and campaigns again instead of hanging, and leads once the lock is free', async () => {
    // A holder the server does not end (no idle timeout: an older writer, or one busy in
    // a statement): only the record's own bounds help.
    const fencingTimeoutMs = 800;
    const { store, url, lease, agentId } = await setUp(fencingTimeoutMs);
    const holder = await stalledFencedWrite(url, agentId, fencingTimeoutMs, '; set local idle_in_transaction_session_timeout = 0');

    const startedMs = Date.now();
    await expect(store.recordFencingToken(7)).rejects.toMatchObject({ code: 'LEADER_FENCE_LOCK_TIMEOUT' });
    const waitedMs = Date.now() - startedMs;
    expect(waitedMs).toBeGreaterThanOrEqual(fencingTimeoutMs - 50);
    expect(waitedMs).toBeLessThan(fencingTimeoutMs + 3_000);

    let ledWith: number | undefined;
    const elector = new LeaderElector({ lease, replicaId: 'blocked', fence: store, lead: (_s, token) => void (ledWith = token) });
    elector.start();
    let stopped = false;
    cleanups.push(async () => {
      if (!stopped) await elector.stop();
    });
    // Term after term fails to record, and each gives the lease up and campaigns again.
    await waitUntil(() => (lease.acquired >= 3 ? true : undefined), 10 * TTL_MS, 'three campaigns');
    expect(ledWith).toBeUndefined();
    expect(elector.isLeader()).toBe(false);

    await holder.client.query('rollback');
    const token = await waitUntil(() => ledWith, 5 * TTL_MS, 'leading once the fence lock is free');
    expect(elector.isLeader()).toBe(true);
    await store.assertFencingToken(token);

    const stopStartedMs = Date.now();
    await elector.stop();
    stopped = true;
    expect(Date.now() - stopStartedMs).toBeLessThan(2 * TTL_MS);
  }, 40_000);

  it('the elector gives a record attempt one TTL even when the store would wait longer, and stop() does not wait for it', async () => {
    const fencingTimeoutMs = 20_000;
    const { store, url, lease, agentId } = await setUp(fencingTimeoutMs);
    const holder = await stalledFencedWrite(url, agentId, fencingTimeoutMs, '; set local idle_in_transaction_session_timeout = 0');

    let led = false;
    const elector = new LeaderElector({ lease, replicaId: 'patient', fence: store, lead: () => void (led = true) });
    elector.start();
    let stopped = false;
    cleanups.push(async () => {
      if (!stopped) await elector.stop();
      await holder.client.query('rollback').catch(() => undefined);
    });
    // Well within the store's 20 s: the elector ended its terms itself and campaigned again.
    await waitUntil(() => (lease.acquired >= 2 ? true : undefined), 6 * TTL_MS, 'a second campaign');
    expect(led).toBe(false);
    expect(elector.isLeader()).toBe(false);

    const stopStartedMs = Date.now();
    await elector.stop();
    stopped = true;
    expect(Date.now() - stopStartedMs).toBeLessThan(2 * TTL_MS);
    await holder.client.query('rollback');
  }, 30_000);
});
