import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Bus } from '../../src/bus/bus.js';
import type { PlatformEvent } from '../../src/domain/event.js';

/** What the suite needs from an adapter besides the port itself. */
export interface BusHarness {
  /** A fresh, empty bus (each test gets its own queue). */
  open(): Promise<Bus>;
  /**
   * Another instance sharing the queue and events of the bus open() returned last, as
   * a second replica would; undefined for single-process adapters.
   */
  openPeer?: (() => Promise<Bus>) | undefined;
  /** depth() once the adapter has caught up (RedisBus caches it). */
  settledDepth(bus: Bus): Promise<number>;
  /** Runs after each test, after every bus was closed (delete keys). */
  cleanup?: (() => Promise<void>) | undefined;
}

/**
 * Slack for timing assertions: a Redis-backed bus rounds due times to the server's ms
 * clock and wakes through pub/sub; a loaded 2-core machine adds scheduling delay.
 */
const EARLY_SLACK_MS = 15;

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

const event = (id: number, reason = 'Test'): PlatformEvent => ({
  id,
  tenantId: 't1',
  objectKind: 'Agent',
  objectId: `agent-${id}`,
  type: 'Normal',
  reason,
  message: `event ${id}`,
  data: { n: id, nested: { ok: true } },
  time: 1_767_225_600_000 + id,
});

/**
 * The contract every Bus adapter must meet: dedupe, delays (earliest due wins),
 * per-key exclusivity, bounded concurrency, requeue of a key enqueued while it runs,
 * abort, and event fan-out (across instances when the adapter is shared).
 */
export function busConformance(name: string, h: BusHarness): void {
  describe(`Bus conformance: ${name}`, () => {
    const opened: Bus[] = [];
    const consumers: AbortController[] = [];
    let bus: Bus;

    const open = async (): Promise<Bus> => {
      const b = await h.open();
      opened.push(b);
      return b;
    };
    const peer = async (): Promise<Bus> => {
      const b = await h.openPeer!();
      opened.push(b);
      return b;
    };
    const consume = (b: Bus, handler: (key: string, signal: AbortSignal) => Promise<void>, concurrency: number): AbortController => {
      const ac = new AbortController();
      consumers.push(ac);
      b.consume(handler, concurrency, ac.signal);
      return ac;
    };

    beforeEach(async () => {
      bus = await open();
    });
    afterEach(async () => {
      for (const ac of consumers.splice(0)) ac.abort();
      for (const b of opened.splice(0).reverse()) await b.close();
      await h.cleanup?.();
    });

    describe('work queue', () => {
      it('deduplicates keys waiting to run', async () => {
        for (let i = 0; i < 3; i++) bus.enqueue('a');
        bus.enqueue('b');
        bus.enqueue('b');
        expect(await h.settledDepth(bus)).toBe(2);
        const seen: string[] = [];
        consume(bus, async (key) => void seen.push(key), 4);
        await waitUntil(() => seen.length >= 2, 5_000, 'both keys');
        await sleep(150);
        expect(seen.sort()).toEqual(['a', 'b']);
        expect(await h.settledDepth(bus)).toBe(0);
      });

      it('runs a delayed key no earlier than its delay, and the earliest due time wins', async () => {
        const t0 = Date.now();
        const at = new Map<string, number[]>();
        consume(bus, async (key) => void at.set(key, [...(at.get(key) ?? []), Date.now() - t0]), 4);
        bus.enqueue('late', 300);
        bus.enqueue('moved-earlier', 600);
        bus.enqueue('moved-earlier', 100);
        bus.enqueue('kept-early', 100);
        bus.enqueue('kept-early', 600);
        await waitUntil(() => at.has('late') && at.has('moved-earlier') && at.has('kept-early'), 5_000, 'all three keys');
        expect(at.get('late')![0]).toBeGreaterThanOrEqual(300 - EARLY_SLACK_MS);
        expect(at.get('moved-earlier')![0]).toBeGreaterThanOrEqual(100 - EARLY_SLACK_MS);
        expect(at.get('moved-earlier')![0]).toBeLessThan(550);
        expect(at.get('kept-early')![0]).toBeLessThan(550);
        // The later due time was absorbed, not kept as a second run.
        await sleep(800 - (Date.now() - t0));
        expect(at.get('moved-earlier')).toHaveLength(1);
        expect(at.get('kept-early')).toHaveLength(1);
        expect(await h.settledDepth(bus)).toBe(0);
      });

      it('counts delayed keys in depth() until they run', async () => {
        bus.enqueue('x', 60_000);
        bus.enqueue('y', 60_000);
        expect(await h.settledDepth(bus)).toBe(2);
      });

      it('counts in backlog() the keys due and waiting: not delayed ones until due, not those being handled', async () => {
        expect(await bus.backlog()).toBe(0);
        for (const key of ['a', 'b', 'c']) bus.enqueue(key);
        bus.enqueue('a'); // deduplicated
        bus.enqueue('soon', 1_500);
        bus.enqueue('later', 60_000);
        expect(await bus.backlog()).toBe(3);
        await sleep(1_600);
        expect(await bus.backlog()).toBe(4); // 'soon' came due; nobody consumes

        // One handler that holds its key: the key it holds leaves the backlog.
        const holding: string[] = [];
        let release!: () => void;
        const released = new Promise<void>((resolve) => (release = resolve));
        consume(bus, async (key) => {
          holding.push(key);
          await released;
        }, 1);
        await waitUntil(() => holding.length === 1, 5_000, 'the first key handed out');
        expect(await bus.backlog()).toBe(3);
        bus.enqueue(holding[0]!); // enqueued while held: runs again later, not in the backlog now
        expect(await bus.backlog()).toBe(3);
        release();
        await waitUntil(() => holding.length >= 5, 5_000, 'every due key handled, the re-enqueued one twice');
        expect(await bus.backlog()).toBe(0);
        expect(await h.settledDepth(bus)).toBe(1); // 'later'
      });

      it('never runs one key twice at once; a key enqueued while it runs runs once more afterwards', async () => {
        const active = new Set<string>();
        let overlaps = 0;
        const runs: string[] = [];
        consume(
          bus,
          async (key) => {
            if (active.has(key)) overlaps++;
            active.add(key);
            runs.push(key);
            await sleep(120);
            active.delete(key);
          },
          8,
        );
        bus.enqueue('a');
        await waitUntil(() => runs.length === 1, 5_000, 'first run of a');
        // While a runs: three enqueues collapse into one more run, after this one.
        bus.enqueue('a');
        bus.enqueue('a');
        bus.enqueue('a');
        await waitUntil(() => runs.length === 2, 5_000, 'second run of a');
        await sleep(300);
        expect(runs).toEqual(['a', 'a']);
        expect(overlaps).toBe(0);
        expect(await h.settledDepth(bus)).toBe(0);
      });

      it('keeps the delay of a key enqueued while it runs', async () => {
        const runsAt: number[] = [];
        let requeuedAt = 0;
        consume(
          bus,
          async () => {
            runsAt.push(Date.now());
            if (runsAt.length === 1) {
              requeuedAt = Date.now();
              bus.enqueue('k', 250);
              await sleep(50);
            }
          },
          2,
        );
        bus.enqueue('k');
        await waitUntil(() => runsAt.length === 2, 5_000, 'the delayed second run');
        expect(runsAt[1]! - requeuedAt).toBeGreaterThanOrEqual(250 - EARLY_SLACK_MS);
      });

      it('runs at most `concurrency` handlers at once and every key once', async () => {
        let running = 0;
        let maxRunning = 0;
        const done: string[] = [];
        consume(
          bus,
          async (key) => {
            running++;
            maxRunning = Math.max(maxRunning, running);
            await sleep(40);
            running--;
            done.push(key);
          },
          3,
        );
        const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
        for (const k of keys) bus.enqueue(k);
        await waitUntil(() => done.length === keys.length, 10_000, 'all keys');
        await sleep(100);
        expect(maxRunning).toBe(3);
        expect(done.sort()).toEqual([...keys].sort());
      });

      it('goes on after a handler throws, and runs the key again when enqueued again', async () => {
        const runs: string[] = [];
        consume(
          bus,
          async (key) => {
            runs.push(key);
            if (runs.length === 1) throw new Error('boom');
          },
          1,
        );
        bus.enqueue('x');
        await waitUntil(() => runs.length === 1, 5_000, 'first run');
        bus.enqueue('y');
        bus.enqueue('x');
        await waitUntil(() => runs.length === 3, 5_000, 'the runs after the failure');
        expect(runs.sort()).toEqual(['x', 'x', 'y']);
      });

      it('stops handing out keys when the signal aborts, and aborts the running handlers', async () => {
        const runs: string[] = [];
        let sawAbort = false;
        const ac = consume(
          bus,
          async (key, signal) => {
            runs.push(key);
            await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
            sawAbort = signal.aborted;
          },
          2,
        );
        bus.enqueue('first');
        await waitUntil(() => runs.length === 1, 5_000, 'first run');
        ac.abort();
        await waitUntil(() => sawAbort, 2_000, 'the handler to see the abort');
        bus.enqueue('after-abort');
        await sleep(300);
        expect(runs).toEqual(['first']);
        expect(await h.settledDepth(bus)).toBe(1);
        // A new consumer (a new leader) picks up what the stopped one left.
        const later: string[] = [];
        consume(bus, async (key) => void later.push(key), 2);
        await waitUntil(() => later.includes('after-abort'), 5_000, 'the key left behind');
      });
    });

    describe('events', () => {
      it('fans each event out once to every subscriber, with its fields intact', async () => {
        const a: PlatformEvent[] = [];
        const b: PlatformEvent[] = [];
        const offA = bus.subscribe((e) => a.push(e));
        bus.subscribe((e) => b.push(e));
        bus.publish(event(1));
        bus.publish(event(2));
        await waitUntil(() => a.length >= 2 && b.length >= 2, 5_000, 'two events at both subscribers');
        offA();
        bus.publish(event(3));
        await waitUntil(() => b.length >= 3, 5_000, 'the third event');
        await sleep(100);
        expect(a).toEqual([event(1), event(2)]);
        expect(b).toEqual([event(1), event(2), event(3)]);
      });

      it('a throwing subscriber does not stop the others', async () => {
        const got: number[] = [];
        bus.subscribe(() => {
          throw new Error('broken subscriber');
        });
        bus.subscribe((e) => got.push(e.id));
        bus.publish(event(7));
        bus.publish(event(8));
        await waitUntil(() => got.length === 2, 5_000, 'both events');
        expect(got).toEqual([7, 8]);
      });
    });

    if (h.openPeer) {
      describe('shared by two instances (two replicas)', () => {
        it('delivers events published on either instance to both, once each', async () => {
          const other = await peer();
          const here: string[] = [];
          const there: string[] = [];
          bus.subscribe((e) => here.push(e.reason));
          other.subscribe((e) => there.push(e.reason));
          bus.publish(event(1, 'from-one'));
          other.publish(event(2, 'from-two'));
          await waitUntil(() => here.length >= 2 && there.length >= 2, 5_000, 'both events on both instances');
          await sleep(150);
          expect(here.sort()).toEqual(['from-one', 'from-two']);
          expect(there.sort()).toEqual(['from-one', 'from-two']);
        });

        it('a key enqueued on one instance is consumed on the other, and dedupes across instances', async () => {
          const other = await peer();
          other.enqueue('shared');
          bus.enqueue('shared');
          expect(await h.settledDepth(bus)).toBe(1);
          const seen: string[] = [];
          consume(bus, async (key) => void seen.push(key), 2);
          await waitUntil(() => seen.length === 1, 5_000, 'the shared key');
          await sleep(200);
          expect(seen).toEqual(['shared']);
        });

        it('two consumers on two instances never run one key at once and lose no key', async () => {
          const other = await peer();
          const active = new Set<string>();
          let overlaps = 0;
          const counts = new Map<string, number>();
          const handler = async (key: string): Promise<void> => {
            if (active.has(key)) overlaps++;
            active.add(key);
            counts.set(key, (counts.get(key) ?? 0) + 1);
            await sleep(15 + Math.floor(Math.random() * 20));
            active.delete(key);
          };
          consume(bus, handler, 4);
          consume(other, handler, 4);
          const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
          // Several rounds, from both sides, while earlier runs are still going.
          for (let round = 0; round < 4; round++) {
            for (const k of keys) (round % 2 === 0 ? bus : other).enqueue(k);
            await sleep(30);
          }
          await waitUntil(() => keys.every((k) => (counts.get(k) ?? 0) >= 1), 10_000, 'every key at least once');
          await sleep(300);
          expect(await h.settledDepth(bus)).toBe(0);
          expect(overlaps).toBe(0);
          // Dedupe: never more runs of a key than enqueues of it.
          for (const k of keys) expect(counts.get(k)!).toBeLessThanOrEqual(4);
        });
      });
    }
  });
}
