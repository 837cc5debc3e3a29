import { describe, expect, it } from 'vitest';
import { ManualClock } from '../domain/clock.js';
import { MemoryRateLimiter, takeToken } from './rate-limiter.js';

describe('token bucket', () => {
  it('allows a burst, then one request per 1/rate seconds', async () => {
    const clock = new ManualClock(0);
    const limiter = new MemoryRateLimiter({ ratePerSecond: 2, burst: 3 }, clock);
    const first = await Promise.all([1, 2, 3, 4].map(() => limiter.take('k')));
    expect(first.map((d) => d.allowed)).toEqual([true, true, true, false]);
    expect(first[3]!.retryAfterMs).toBe(500);
    clock.advance(499);
    expect((await limiter.take('k')).allowed).toBe(false);
    clock.advance(1);
    expect((await limiter.take('k')).allowed).toBe(true);
    expect((await limiter.take('other')).allowed).toBe(true);
  });

  it('never refills for a clock that went backwards, and never beyond the burst', () => {
    let s = takeToken(undefined, 10_000, { ratePerSecond: 1, burst: 2 }).state;
    s = takeToken(s, 10_000, { ratePerSecond: 1, burst: 2 }).state;
    expect(s.tokens).toBe(0);
    const back = takeToken(s, 5_000, { ratePerSecond: 1, burst: 2 });
    expect(back.decision.allowed).toBe(false);
    const later = takeToken(back.state, 1_000_000, { ratePerSecond: 1, burst: 2 });
    expect(later.state.tokens).toBe(1);
  });
});
