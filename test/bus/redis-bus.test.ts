import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisBus } from '../../src/bus/redis-bus.js';
import { deleteRedisPrefix, requireRedis, testRedisUrl } from '../helpers/require-redis.js';

/** What the shared conformance suite cannot say: reservations across dying consumers. */
const hasRedis = await requireRedis();

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

describe.skipIf(!hasRedis)('RedisBus reservations', () => {
  const prefixes: string[] = [];
  const buses: RedisBus[] = [];
  const controllers: AbortController[] = [];
  const open = async (prefix: string, claimTtlMs: number): Promise<RedisBus> => {
    const bus = new RedisBus({ url: testRedisUrl, prefix, claimTtlMs, pollIntervalMs: 100, closeGraceMs: 0 });
    buses.push(bus);
    await bus.ready();
    return bus;
  };
  const newPrefix = (): string => {
    const p = `ap-test-${randomBytes(6).toString('hex')}:`;
    prefixes.push(p);
    return p;
  };
  afterEach(async () => {
    for (const ac of controllers.splice(0)) ac.abort();
    for (const b of buses.splice(0)) await b.close();
    for (const p of prefixes.splice(0)) await deleteRedisPrefix(p);
  });

  it('a live consumer keeps its key past claimTtlMs; a dead one loses it to another after about claimTtlMs', async () => {
    const prefix = newPrefix();
    const claimTtlMs = 300;
    const dying = await open(prefix, claimTtlMs);
    const survivor = await open(prefix, claimTtlMs);
    let dyingStarted = 0;
    const acA = new AbortController();
    controllers.push(acA);
    // Never finishes: the process "hangs" in the handler, then dies without handing back.
    dying.consume(async () => {
      dyingStarted++;
      await new Promise<void>(() => undefined);
    }, 1, acA.signal);
    dying.enqueue('held');
    await waitUntil(() => dyingStarted === 1, 5_000, 'the first consumer to take the key');

    const survivorRuns: number[] = [];
    const acB = new AbortController();
    controllers.push(acB);
    survivor.consume(async () => void survivorRuns.push(Date.now()), 1, acB.signal);
    survivor.enqueue('held');
    // Four reservation periods: renewals keep it with the first consumer.
    await sleep(4 * claimTtlMs);
    expect(survivorRuns).toEqual([]);

    const diedAt = Date.now();
    await dying.close(); // stops renewing, as a killed process would
    await waitUntil(() => survivorRuns.length >= 1, 5_000, 'the survivor to take over the key');
    const takeoverMs = survivorRuns[0]! - diedAt;
    expect(takeoverMs).toBeLessThanOrEqual(claimTtlMs + 600);
    // Enqueued while held: recovered as one run, not two.
    await sleep(300);
    expect(survivorRuns).toHaveLength(1);
    expect(await survivor.refreshDepth()).toBe(0);
  });

  it('queues under different prefixes do not see each other', async () => {
    const one = await open(newPrefix(), 5_000);
    const two = await open(newPrefix(), 5_000);
    one.enqueue('a');
    one.enqueue('b');
    expect(await one.refreshDepth()).toBe(2);
    expect(await two.refreshDepth()).toBe(0);
    const seen: string[] = [];
    const ac = new AbortController();
    controllers.push(ac);
    two.consume(async (k) => void seen.push(k), 2, ac.signal);
    await sleep(300);
    expect(seen).toEqual([]);
  });

  it('depth() is a cached value that catches up within the refresh period', async () => {
    const prefix = newPrefix();
    const bus = new RedisBus({ url: testRedisUrl, prefix, depthRefreshMs: 50 });
    buses.push(bus);
    await bus.ready();
    expect(bus.depth()).toBe(0);
    bus.enqueue('x', 60_000);
    await waitUntil(() => bus.depth() === 1, 2_000, 'the cached depth');
  });
});
