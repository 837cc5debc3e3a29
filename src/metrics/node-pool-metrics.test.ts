import { describe, expect, it } from 'vitest';
import type { Node } from '../domain/node.js';
import { nodeMetricsFromPool } from './node-pool-metrics.js';

const node = (over: Partial<Node>): Node => ({
  id: 'n1',
  driver: 'docker',
  simulated: false,
  labels: {},
  taints: [],
  capacity: { cpuMillicores: 4000, memoryMiB: 8192, maxAgents: 110, gpus: [{ id: '0', model: 'T4' }, { id: '1', model: 'T4' }] },
  reserved: { cpuMillicores: 500, memoryMiB: 1024 },
  allocated: { cpuMillicores: 0, memoryMiB: 0, agents: 0, gpuIds: [] },
  ready: true,
  cordoned: false,
  unhealthy: false,
  ...over,
});

describe('nodeMetricsFromPool', () => {
  it('reports schedulable capacity, the placer’s allocation, readiness and the simulated flag', () => {
    const out = nodeMetricsFromPool([node({}), node({ id: 'sim-1', driver: 'simulated', simulated: true, ready: false })], (id) =>
      id === 'n1' ? { cpuMillicores: 1500, memoryMiB: 2048, agents: 3, gpuIds: ['1'] } : undefined,
    );
    expect(out).toEqual([
      { node: 'n1', simulated: false, ready: true, capacity: { cpuMillicores: 3500, memoryBytes: 7168 * 1024 * 1024, gpus: 2 }, allocated: { cpuMillicores: 1500, memoryBytes: 2048 * 1024 * 1024, gpus: 1 } },
      { node: 'sim-1', simulated: true, ready: false, capacity: { cpuMillicores: 3500, memoryBytes: 7168 * 1024 * 1024, gpus: 2 }, allocated: { cpuMillicores: 0, memoryBytes: 0, gpus: 0 } },
    ]);
  });
});
