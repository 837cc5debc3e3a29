import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaderElector } from '../../src/ha/leader-elector.js';
import type { LeaderLease } from '../../src/ha/leader-lease.js';
import { RedisLeaderLease } from '../../src/ha/redis-leader-lease.js';
import { openStore } from '../../src/store/open-store.js';
import { deleteRedisPrefix, requireRedis, testRedisUrl } from '../helpers/require-redis.js';

const hasRedis = await requireRedis();

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** A lease whose replica can be cut off from Redis: calls then hang, as on a dead network. */
class PartitionableLease implements LeaderLease {
  readonly kind = 'partitionable';
  partitioned = false;
  constructor(private readonly inner: LeaderLease) {}
  get ttlMs(): number {
    return this.inner.ttlMs;
  }
  private gate<T>(call: () => Promise<T>): Promise<T> {
    return this.partitioned ? new Promise<T>(() => undefined) : call();
  }
  acquire(id: string, s?: AbortSignal) {
    return this.gate(() => this.inner.acquire(id, s));
  }
  renew(id: string, t: number, s?: AbortSignal) {
    return this.gate(() => this.inner.renew(id, t, s));
  }
  release(id: string, t: number) {
    return this.gate(() => this.inner.release(id, t));
  }
  advanceFencingToken(atLeast: number) {
    return this.gate(() => this.inner.advanceFencingToken(atLeast));
  }
  holder(s?: AbortSignal) {
    return this.inner.holder(s);
  }
  close() {
    return this.inner.close();
  }
}

describe.skipIf(!hasRedis)('leader lease and elector on Redis', () => {
  const prefixes: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  const newPrefix = (): string => {
    const p = `ap-test-${randomBytes(6).toString('hex')}:`;
    prefixes.push(p);
    return p;
  };
  const lease = (prefix: string, ttlMs: number): RedisLeaderLease => {
    const l = new RedisLeaderLease({ url: testRedisUrl, prefix, ttlMs });
    closers.push(() => l.close());
    return l;
  };
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    for (const p of prefixes.splice(0)) await deleteRedisPrefix(p);
  });

  it('one holder at a time; renew and release only with the holder\'s token; tokens grow', async () => {
    const prefix = newPrefix();
    const a = lease(prefix, 1_000);
    const b = lease(prefix, 1_000);
    const t1 = await a.acquire('a');
    expect(t1).toBeGreaterThan(0);
    expect(await b.acquire('b')).toBeUndefined();
    expect(await a.holder()).toEqual({ replicaId: 'a', fencingToken: t1 });
    expect(await a.renew('a', t1!)).toBe(true);
    expect(await b.renew('b', t1!)).toBe(false);
    expect(await b.renew('a', t1! + 1)).toBe(false);
    await b.release('b', t1!); // not b's: no effect
    expect(await a.holder()).toEqual({ replicaId: 'a', fencingToken: t1 });

    // Not renewed: lapses after ttl, and the next holder gets a larger token.
    await sleep(1_100);
    expect(await a.holder()).toBeUndefined();
    const t2 = await b.acquire('b');
    expect(t2).toBeGreaterThan(t1!);
    expect(await a.renew('a', t1!)).toBe(false);
    await a.release('a', t1!);
    expect(await b.holder()).toEqual({ replicaId: 'b', fencingToken: t2 });
    await b.release('b', t2!);
    expect(await b.holder()).toBeUndefined();
    const t3 = await a.acquire('a');
    expect(t3).toBeGreaterThan(t2!);

    // The counter only moves up: advancing to a smaller value is a no-op.
    await a.release('a', t3!);
    await b.advanceFencingToken(t3! + 100);
    await b.advanceFencingToken(2);
    expect(await a.acquire('a')).toBe(t3! + 101);
  });

  it('three electors: never two leaders; a clean stop hands over at once', async () => {
    const prefix = newPrefix();
    // Not much shorter: a test worker starved of CPU for about a TTL makes a leader step
    // down (correctly), which this test would count as an unexpected second term.
    const ttlMs = 1_500;
    const terms: { id: string; token: number; startMs: number; endMs?: number }[] = [];
    const electors = ['r1', 'r2', 'r3'].map((id) => {
      const e = new LeaderElector({
        lease: lease(prefix, ttlMs),
        replicaId: id,
        lead: (signal, token) => {
          const t: { id: string; token: number; startMs: number; endMs?: number } = { id, token, startMs: Date.now() };
          terms.push(t);
          signal.addEventListener('abort', () => (t.endMs = Date.now()), { once: true });
        },
      });
      closers.push(() => e.stop());
      e.start();
      return e;
    });
    let maxLeaders = 0;
    const sampleUntil = Date.now() + 2 * ttlMs;
    while (Date.now() < sampleUntil) {
      maxLeaders = Math.max(maxLeaders, electors.filter((e) => e.isLeader()).length);
      await sleep(10);
    }
    expect(maxLeaders).toBe(1);
    const leader = electors.find((e) => e.isLeader())!;
    expect(terms).toHaveLength(1); // renewals kept the one term going
    const stoppedAt = Date.now();
    await leader.stop();
    await waitUntil(() => electors.some((e) => e !== leader && e.isLeader()), 3_000, 'a new leader');
    // Released on stop: the next one starts within a retry interval, not after a TTL.
    expect(Date.now() - stoppedAt).toBeLessThan(ttlMs);
    expect(terms).toHaveLength(2);
    expect(terms[1]!.token).toBeGreaterThan(terms[0]!.token);
    expect(terms[0]!.endMs).toBeLessThanOrEqual(terms[1]!.startMs);
  });

  it('a leader cut off from Redis stops before anyone else starts', async () => {
    const prefix = newPrefix();
    const ttlMs = 1_000;
    const cutOff = new PartitionableLease(lease(prefix, ttlMs));
    const events: string[] = [];
    let firstEndedMs = 0;
    let secondStartedMs = 0;
    const first = new LeaderElector({
      lease: cutOff,
      replicaId: 'first',
      lead: (signal) => {
        events.push('first:start');
        signal.addEventListener('abort', () => {
          firstEndedMs = Date.now();
          events.push('first:end');
        });
      },
    });
    // Cut off, stop() still returns: the calls that hang are raced with the stop.
    closers.push(() => first.stop());
    first.start();
    await waitUntil(() => first.isLeader(), 3_000, 'the first leader');
    const second = new LeaderElector({
      lease: lease(prefix, ttlMs),
      replicaId: 'second',
      lead: () => {
        secondStartedMs = Date.now();
        events.push('second:start');
      },
    });
    closers.push(() => second.stop());
    second.start();
    await sleep(ttlMs); // second stays a follower while first renews
    expect(second.isLeader()).toBe(false);

    const partitionedAt = Date.now();
    cutOff.partitioned = true;
    await waitUntil(() => second.isLeader(), 5_000, 'the second to take over');
    expect(events).toEqual(['first:start', 'first:end', 'second:start']);
    expect(first.isLeader()).toBe(false);
    expect(firstEndedMs).toBeLessThan(secondStartedMs);
    // Takeover bound: one TTL since the last renewal plus one retry interval (+ slack).
    expect(secondStartedMs - partitionedAt).toBeLessThan(ttlMs + ttlMs / 4 + 500);
  });

  it('a leader whose lease was taken over (lapsed, then set by another) ends its term at the next renewal', async () => {
    const prefix = newPrefix();
    let aborted = false;
    const e = new LeaderElector({
      lease: lease(prefix, 3_000),
      replicaId: 'x',
      lead: (signal) => signal.addEventListener('abort', () => (aborted = true)),
    });
    closers.push(() => e.stop());
    e.start();
    await waitUntil(() => e.isLeader(), 3_000, 'leadership');
    const raw = new Redis(testRedisUrl);
    closers.push(async () => void (await raw.quit()));
    await raw.set(`${prefix}leader`, '999 intruder', 'PX', 10_000);
    await waitUntil(() => aborted, 3_000, 'the term to end');
    expect(e.isLeader()).toBe(false);
    // The intruder's lease is left alone.
    expect(await raw.get(`${prefix}leader`)).toBe('999 intruder');
  });

  it('a term whose token the store has seen surpassed, cut off from Redis while catching the counter up, still ends: stop() does not hang', async () => {
    const store = await openStore('sqlite::memory:', '.');
    closers.push(() => store.close());
    // A newer leader has recorded a much larger token.
    await store.recordFencingToken(1_000);
    const ttlMs = 1_000;
    const partitionable = new PartitionableLease(lease(newPrefix(), ttlMs));
    let recorded = false;
    let led = false;
    const e = new LeaderElector({
      lease: partitionable,
      replicaId: 'behind',
      // The real store; the partition begins right after the record, so that the
      // counter's advance (advanceFencingToken) hangs.
      fence: {
        recordFencingToken: async (token) => {
          const answer = await store.recordFencingToken(token);
          partitionable.partitioned = true;
          recorded = true;
          return answer;
        },
      },
      lead: () => void (led = true),
    });
    e.start();
    await waitUntil(() => recorded, 5_000, 'the record');
    await sleep(100);
    const stopStartedMs = Date.now();
    // Its release hangs too: stop() waits for it one TTL at most.
    await e.stop();
    expect(Date.now() - stopStartedMs).toBeLessThan(ttlMs + 1_500);
    expect(led).toBe(false);
    expect(e.isLeader()).toBe(false);
  });
});
