import { describe, expect, it } from 'vitest';
import { restartBackoffMs } from './backoff.js';

describe('restartBackoffMs', () => {
  it('starts at 1 s and doubles up to 5 min', () => {
    expect([0, 1, 2, 3, 4].map((n) => restartBackoffMs(n))).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(restartBackoffMs(8)).toBe(256_000);
    expect(restartBackoffMs(9)).toBe(300_000);
    expect(restartBackoffMs(1000)).toBe(300_000);
  });
});
