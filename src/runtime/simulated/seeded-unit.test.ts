import { describe, expect, it } from 'vitest';
import { seededUnit } from './seeded-unit.js';

describe('seededUnit', () => {
  it('is a pure function of (seed, key, n) with values in [0, 1)', () => {
    for (let n = 0; n < 100; n++) {
      const value = seededUnit(7, `agent-${n}`, n);
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1);
      expect(seededUnit(7, `agent-${n}`, n)).toBe(value);
    }
  });

  it('changes with the seed, the key and the run number', () => {
    const base = seededUnit(1, 'a', 0);
    expect(seededUnit(2, 'a', 0)).not.toBe(base);
    expect(seededUnit(1, 'b', 0)).not.toBe(base);
    expect(seededUnit(1, 'a', 1)).not.toBe(base);
  });

  it('spreads evenly: ten equal buckets each get about a tenth of 100,000 draws', () => {
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) buckets[Math.floor(seededUnit(42, `agent-${i}`, i % 3) * 10)]!++;
    for (const count of buckets) {
      expect(count).toBeGreaterThan(9_500);
      expect(count).toBeLessThan(10_500);
    }
  });
});
