import { describe, expect, it } from 'vitest';
import { percentile, summarize } from './latency-summary.js';

describe('percentile', () => {
  it('interpolates between closest ranks (R-7)', () => {
    const s = [10, 20, 30, 40];
    expect(percentile(s, 50)).toBe(25);
    expect(percentile(s, 0)).toBe(10);
    expect(percentile(s, 100)).toBe(40);
    expect(percentile(s, 90)).toBeCloseTo(37, 10);
  });
  it('is NaN for an empty sample', () => {
    expect(percentile([], 50)).toBeNaN();
  });
});

describe('summarize', () => {
  it('sorts its input and computes the mean', () => {
    const r = summarize([3, 1, 2, 10]);
    expect(r).toMatchObject({ count: 4, p50Ms: 2.5, meanMs: 4, minMs: 1, maxMs: 10 });
  });
});
