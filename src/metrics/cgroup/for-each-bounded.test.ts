import { describe, expect, it } from 'vitest';
import { forEachBounded } from './for-each-bounded.js';

const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1));

describe('forEachBounded', () => {
  it('runs every item with at most `limit` in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    const done: number[] = [];
    await forEachBounded(Array.from({ length: 20 }, (_, i) => i), 3, async (i) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await tick();
      inFlight--;
      done.push(i);
    });
    expect(done.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(peak).toBe(3);
  });

  it('rejects with the first error and starts nothing after it', async () => {
    const started: number[] = [];
    await expect(
      forEachBounded([1, 2, 3, 4, 5], 1, async (i) => {
        started.push(i);
        if (i === 2) throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(started).toEqual([1, 2]);
  });

  it('stops starting tasks once the signal aborts', async () => {
    const controller = new AbortController();
    const started: number[] = [];
    const run = forEachBounded([1, 2, 3, 4], 1, async (i) => {
      started.push(i);
      if (i === 2) controller.abort(new Error('stopped'));
      await tick();
    }, controller.signal);
    await expect(run).rejects.toThrow('stopped');
    expect(started).toEqual([1, 2]);
  });

  it('handles an empty list', async () => {
    await expect(forEachBounded([], 4, async () => {})).resolves.toBeUndefined();
  });
});
