import { describe, expect, it } from 'vitest';
import { balancedAllocationScore } from './balanced-allocation.js';
import { leastAllocatedScore } from './least-allocated.js';
import { mostAllocatedScore } from './most-allocated.js';
import { nodeAffinityRawScore, normalizeNodeAffinityScore } from './node-affinity-score.js';
import { intolerablePreferNoScheduleCount, normalizeTaintTolerationScore } from './taint-toleration-score.js';

describe('LeastAllocated', () => {
  it('is the mean share left free after placing', () => {
    // cpu: 1000 of 4000 requested -> 75; memory: 6144 of 8192 -> 25; mean 50.
    expect(leastAllocatedScore(1000, 4000, 6144, 8192)).toBe(50);
    expect(leastAllocatedScore(0, 4000, 0, 8192)).toBe(100);
    expect(leastAllocatedScore(4000, 4000, 8192, 8192)).toBe(0);
  });

  it('gives 0 for a resource that overflows or has nothing allocatable', () => {
    expect(leastAllocatedScore(5000, 4000, 4096, 8192)).toBe(25); // cpu 0, memory 50
    expect(leastAllocatedScore(0, 0, 4096, 8192)).toBe(25);
  });
});

describe('MostAllocated', () => {
  it('is the mean share in use after placing, capped at 100', () => {
    expect(mostAllocatedScore(1000, 4000, 6144, 8192)).toBe(50); // 25 and 75
    expect(mostAllocatedScore(3000, 4000, 2048, 8192)).toBe(50); // 75 and 25
    expect(mostAllocatedScore(8000, 4000, 8192, 8192)).toBe(100);
    expect(mostAllocatedScore(1000, 0, 0, 8192)).toBe(0);
  });
});

describe('BalancedAllocation', () => {
  it('is (1 - |f_cpu - f_mem| / 2) * 100', () => {
    // f_cpu = 0.5, f_mem = 0.25 -> std 0.125 -> 87.5
    expect(balancedAllocationScore(2000, 4000, 2048, 8192)).toBe(87.5);
    expect(balancedAllocationScore(1000, 4000, 2048, 8192)).toBe(100); // both 0.25
    // f_cpu capped at 1, f_mem 0 -> std 0.5 -> 50
    expect(balancedAllocationScore(9000, 4000, 0, 8192)).toBe(50);
  });
});

describe('NodeAffinity score', () => {
  const term = (zone: string) => ({ matchExpressions: [{ key: 'zone', operator: 'In' as const, values: [zone] }] });

  it('sums matching preferred weights and normalises over the maximum', () => {
    const preferred = [
      { weight: 30, term: term('a') },
      { weight: 20, term: { matchExpressions: [{ key: 'disk', operator: 'Exists' as const }] } },
      { weight: 50, term: term('b') },
    ];
    expect(nodeAffinityRawScore({ zone: 'a', disk: 'ssd' }, preferred)).toBe(50);
    expect(nodeAffinityRawScore({ zone: 'b' }, preferred)).toBe(50);
    expect(nodeAffinityRawScore({ zone: 'c' }, preferred)).toBe(0);
    expect(normalizeNodeAffinityScore(30, 60)).toBe(50);
    expect(normalizeNodeAffinityScore(0, 0)).toBe(0);
  });
});

describe('TaintToleration score', () => {
  it('counts untolerated PreferNoSchedule taints only', () => {
    const taints = [
      { key: 'spot', effect: 'PreferNoSchedule' },
      { key: 'old', value: 'yes', effect: 'PreferNoSchedule' },
      { key: 'hard', effect: 'NoSchedule' },
    ] as const;
    expect(intolerablePreferNoScheduleCount(taints, [])).toBe(2);
    expect(intolerablePreferNoScheduleCount(taints, [{ key: 'spot', operator: 'Exists' }])).toBe(1);
    // A NoSchedule-only toleration does not help with PreferNoSchedule.
    expect(intolerablePreferNoScheduleCount(taints, [{ key: 'spot', operator: 'Exists', effect: 'NoSchedule' }])).toBe(2);
  });

  it('normalises reversed: fewer intolerable taints score higher', () => {
    expect(normalizeTaintTolerationScore(0, 2)).toBe(100);
    expect(normalizeTaintTolerationScore(1, 2)).toBe(50);
    expect(normalizeTaintTolerationScore(2, 2)).toBe(0);
    expect(normalizeTaintTolerationScore(0, 0)).toBe(100);
  });
});
