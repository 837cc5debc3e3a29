import { describe, expect, it } from 'vitest';
import { REASONS } from '../reasons.js';
import { fitFilter } from './fit.js';
import { compareGpuIds, gpuFilter, pickGpuIds } from './gpu.js';
import { compileNodeSelector, matchesRequirement, matchesTerm, nodeAffinityFilter } from './node-affinity.js';
import { nodeReadyFilter } from './node-ready.js';
import { nodeUnschedulableFilter } from './node-unschedulable.js';
import { firstUntoleratedTaint, taintTolerationFilter } from './taint-toleration.js';
import { toleratesTaint } from './tolerates-taint.js';
import { topologySpreadFilter } from './topology-spread.js';

describe('NodeReady', () => {
  it('rejects a node that is not ready, then one that is unhealthy', () => {
    expect(nodeReadyFilter({ ready: false, unhealthy: true })).toBe(REASONS.notReady);
    expect(nodeReadyFilter({ ready: true, unhealthy: true })).toBe(REASONS.unhealthy);
    expect(nodeReadyFilter({ ready: true, unhealthy: false })).toBeNull();
  });
});

describe('NodeUnschedulable', () => {
  it('rejects a cordoned node', () => {
    expect(nodeUnschedulableFilter({ cordoned: true })).toBe(REASONS.cordoned);
    expect(nodeUnschedulableFilter({ cordoned: false })).toBeNull();
  });
});

describe('TaintToleration filter', () => {
  const gpuTaint = { key: 'gpu', value: 'true', effect: 'NoSchedule' } as const;

  it('matches tolerations like Kubernetes', () => {
    expect(toleratesTaint({ key: 'gpu', operator: 'Equal', value: 'true' }, gpuTaint)).toBe(true);
    expect(toleratesTaint({ key: 'gpu', value: 'true' }, gpuTaint)).toBe(true); // Equal is the default
    expect(toleratesTaint({ key: 'gpu', operator: 'Equal', value: 'false' }, gpuTaint)).toBe(false);
    expect(toleratesTaint({ key: 'gpu', operator: 'Exists' }, gpuTaint)).toBe(true);
    expect(toleratesTaint({ operator: 'Exists' }, gpuTaint)).toBe(true); // empty key + Exists tolerates everything
    expect(toleratesTaint({ key: 'gpu', operator: 'Exists', effect: 'NoExecute' }, gpuTaint)).toBe(false);
    expect(toleratesTaint({ key: 'other', operator: 'Exists' }, gpuTaint)).toBe(false);
    expect(toleratesTaint({ key: 'k', operator: 'Equal' }, { key: 'k', effect: 'NoSchedule' })).toBe(true); // missing values are ""
  });

  it('rejects untolerated NoSchedule and NoExecute taints, naming the first', () => {
    const taints = [
      { key: 'soft', value: 'x', effect: 'PreferNoSchedule' },
      { key: 'gpu', value: 'true', effect: 'NoSchedule' },
      { key: 'evict', effect: 'NoExecute' },
    ] as const;
    expect(taintTolerationFilter(taints, [])).toBe('had untolerated taint {gpu: true}');
    expect(taintTolerationFilter(taints, [{ key: 'gpu', operator: 'Exists' }])).toBe('had untolerated taint {evict: }');
    expect(taintTolerationFilter(taints, [{ key: 'gpu', operator: 'Exists' }, { key: 'evict', operator: 'Exists' }])).toBeNull();
    expect(firstUntoleratedTaint(taints, [{ operator: 'Exists' }])).toBeUndefined();
  });

  it('never rejects for PreferNoSchedule', () => {
    expect(taintTolerationFilter([{ key: 'soft', effect: 'PreferNoSchedule' }], [])).toBeNull();
  });
});

describe('NodeSelector + NodeAffinity filter', () => {
  const labels = { zone: 'a', disk: 'ssd', arch: 'amd64' };

  it('evaluates each operator', () => {
    expect(matchesRequirement(labels, { key: 'zone', operator: 'In', values: ['a', 'b'] })).toBe(true);
    expect(matchesRequirement(labels, { key: 'zone', operator: 'In', values: ['b'] })).toBe(false);
    expect(matchesRequirement(labels, { key: 'missing', operator: 'In', values: ['a'] })).toBe(false);
    expect(matchesRequirement(labels, { key: 'zone', operator: 'NotIn', values: ['b'] })).toBe(true);
    expect(matchesRequirement(labels, { key: 'zone', operator: 'NotIn', values: ['a'] })).toBe(false);
    expect(matchesRequirement(labels, { key: 'missing', operator: 'NotIn', values: ['a'] })).toBe(true);
    expect(matchesRequirement(labels, { key: 'disk', operator: 'Exists' })).toBe(true);
    expect(matchesRequirement(labels, { key: 'gpu', operator: 'Exists' })).toBe(false);
    expect(matchesRequirement(labels, { key: 'gpu', operator: 'DoesNotExist' })).toBe(true);
    expect(matchesRequirement(labels, { key: 'disk', operator: 'DoesNotExist' })).toBe(false);
  });

  it('ANDs requirements in a term; an empty term matches nothing', () => {
    expect(matchesTerm(labels, { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }, { key: 'disk', operator: 'Exists' }] })).toBe(true);
    expect(matchesTerm(labels, { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }, { key: 'gpu', operator: 'Exists' }] })).toBe(false);
    expect(matchesTerm(labels, { matchExpressions: [] })).toBe(false);
  });

  it('requires every nodeSelector label and ORs required terms', () => {
    const zoneB = { matchExpressions: [{ key: 'zone', operator: 'In' as const, values: ['b'] }] };
    const ssd = { matchExpressions: [{ key: 'disk', operator: 'In' as const, values: ['ssd'] }] };
    expect(nodeAffinityFilter(labels, compileNodeSelector({}, undefined))).toBeNull();
    expect(nodeAffinityFilter(labels, compileNodeSelector({ zone: 'a', disk: 'ssd' }, undefined))).toBeNull();
    expect(nodeAffinityFilter(labels, compileNodeSelector({ zone: 'a', disk: 'hdd' }, undefined))).toBe(REASONS.nodeSelector);
    expect(nodeAffinityFilter(labels, compileNodeSelector({}, [zoneB, ssd]))).toBeNull();
    expect(nodeAffinityFilter(labels, compileNodeSelector({}, [zoneB]))).toBe(REASONS.nodeSelector);
    expect(nodeAffinityFilter(labels, compileNodeSelector({ arch: 'arm64' }, [ssd]))).toBe(REASONS.nodeSelector);
    expect(compileNodeSelector({}, []).active).toBe(false);
  });
});

describe('Fit filter', () => {
  const request = { cpuMillicores: 500, memoryMiB: 1024 };

  it('checks agent slots, then cpu, then memory', () => {
    expect(fitFilter(500, 1024, 1, request)).toBeNull(); // exactly fits
    expect(fitFilter(100, 100, 0, request)).toBe(REASONS.tooManyAgents);
    expect(fitFilter(499, 100, 1, request)).toBe(REASONS.insufficientCpu);
    expect(fitFilter(500, 1023, 1, request)).toBe(REASONS.insufficientMemory);
  });

  it('does not check a zero request, even on an over-committed node', () => {
    expect(fitFilter(-100, -5, 1, { cpuMillicores: 0, memoryMiB: 0 })).toBeNull();
    expect(fitFilter(-100, 2048, 1, { cpuMillicores: 0, memoryMiB: 1024 })).toBeNull();
  });
});

describe('GPU filter', () => {
  it('needs enough free devices', () => {
    expect(gpuFilter(2, 2)).toBeNull();
    expect(gpuFilter(1, 2)).toBe(REASONS.insufficientGpu);
    expect(gpuFilter(0, 0)).toBeNull();
  });

  it('picks the lowest free ids, numeric ids by value', () => {
    const ids = ['10', '2', '0', '1', 'gpu-b', 'gpu-a'].sort(compareGpuIds);
    expect(ids).toEqual(['0', '1', '2', '10', 'gpu-a', 'gpu-b']);
    expect(pickGpuIds(ids, new Set(['0', '2']), 2)).toEqual(['1', '10']);
    expect(pickGpuIds(ids, new Set(['0', '1', '2', '10', 'gpu-a']), 2)).toEqual(['gpu-b']);
  });
});

describe('TopologySpread filter', () => {
  it('allows a domain up to maxSkew above the emptiest one', () => {
    // domains: a=2, b=1 (min 1). Placing in a -> skew 2; in b -> skew 1.
    expect(topologySpreadFilter(true, 2, 1, 1)).toBe(REASONS.topologySpread);
    expect(topologySpreadFilter(true, 1, 1, 1)).toBeNull();
    expect(topologySpreadFilter(true, 2, 1, 2)).toBeNull();
  });

  it('rejects a node without the topology label', () => {
    expect(topologySpreadFilter(false, 0, 0, 5)).toBe(REASONS.topologySpread);
  });
});
