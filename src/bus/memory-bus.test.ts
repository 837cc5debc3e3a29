import { describe, expect, it } from 'vitest';
import { MemoryBus } from './memory-bus.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('MemoryBus work queue', () => {
  it('deduplicates waiting keys and never runs one key twice at once', async () => {
    const bus = new MemoryBus();
    const ac = new AbortController();
    const seen: string[] = [];
    let concurrentSameKey = 0;
    const active = new Set<string>();
    bus.consume(async (key) => {
      if (active.has(key)) concurrentSameKey++;
      active.add(key);
      seen.push(key);
      await tick(20);
      active.delete(key);
    }, 4, ac.signal);
    bus.enqueue('a');
    bus.enqueue('a');
    bus.enqueue('b');
    await tick(5);
    bus.enqueue('a'); // while a runs: processed again afterwards, once
    bus.enqueue('a');
    await tick(100);
    ac.abort();
    expect(seen.filter((k) => k === 'a')).toHaveLength(2);
    expect(seen.filter((k) => k === 'b')).toHaveLength(1);
    expect(concurrentSameKey).toBe(0);
    await bus.close();
  });

  it('honours delays and concurrency', async () => {
    const bus = new MemoryBus();
    const ac = new AbortController();
    const started: [string, number][] = [];
    let running = 0;
    let maxRunning = 0;
    const t0 = Date.now();
    bus.consume(async (key) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      started.push([key, Date.now() - t0]);
      await tick(30);
      running--;
    }, 2, ac.signal);
    bus.enqueue('late', 80);
    for (const k of ['1', '2', '3', '4']) bus.enqueue(k);
    await tick(200);
    ac.abort();
    expect(maxRunning).toBe(2);
    expect(started.map(([k]) => k).sort()).toEqual(['1', '2', '3', '4', 'late']);
    expect(started.find(([k]) => k === 'late')![1]).toBeGreaterThanOrEqual(75);
    expect(bus.depth()).toBe(0);
  });

  it('hands out due keys in due-time order, and a key moved earlier runs once, at the earlier time', async () => {
    const bus = new MemoryBus();
    const ac = new AbortController();
    const order: string[] = [];
    const t0 = Date.now();
    const at = new Map<string, number>();
    // Queued before the consumer starts, so all are waiting when it first looks.
    bus.enqueue('c', 90);
    bus.enqueue('a', 30);
    bus.enqueue('b', 60);
    bus.enqueue('moved', 400);
    bus.enqueue('moved', 45); // earlier: wins; the 400 ms entry goes stale
    bus.enqueue('now');
    bus.consume(async (key) => {
      order.push(key);
      at.set(key, Date.now() - t0);
    }, 1, ac.signal);
    await tick(500);
    ac.abort();
    expect(order).toEqual(['now', 'a', 'moved', 'b', 'c']);
    expect(at.get('moved')).toBeGreaterThanOrEqual(40);
    expect(at.get('moved')).toBeLessThan(300);
    expect(bus.depth()).toBe(0);
  });

  it('hands out due keys in time independent of how many delayed keys wait', async () => {
    const bus = new MemoryBus();
    const ac = new AbortController();
    let done = 0;
    const n = 50_000;
    const all = new Promise<void>((resolve) => {
      bus.consume(async () => {
        await Promise.resolve();
        if (++done === n) resolve();
      }, 16, ac.signal);
    });
    // Delayed keys queued first (say, unschedulable agents requeued for later): a queue
    // that scans its waiting keys per hand-out walks past all of them every time.
    for (let i = 0; i < n; i++) bus.enqueue(`later${i}`, 60_000);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) bus.enqueue(`now${i}`);
    await all;
    const ms = performance.now() - t0;
    ac.abort();
    expect(done).toBe(n);
    expect(bus.depth()).toBe(n);
    // About 0.2 s here; the scanning queue took minutes (n x n/2 steps).
    expect(ms).toBeLessThan(10_000);
  });

  it('fans events out and survives a throwing subscriber', () => {
    const bus = new MemoryBus();
    const got: number[] = [];
    bus.subscribe(() => {
      throw new Error('boom');
    });
    const off = bus.subscribe((e) => got.push(e.id));
    const ev = { id: 1, tenantId: 't', objectKind: 'Agent' as const, objectId: 'a', type: 'Normal' as const, reason: 'X', message: '', time: 0 };
    bus.publish(ev);
    off();
    bus.publish({ ...ev, id: 2 });
    expect(got).toEqual([1]);
  });
});
