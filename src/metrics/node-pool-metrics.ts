import type { Node, NodeAllocation } from '../domain/node.js';
import type { NodeMetricsSnapshot } from './node-status-poller.js';

const MiB = 1024 * 1024;

/**
 * Node metrics from the node pool, for when it replaces NodeStatusPoller as the source:
 * `metrics.setSources({ nodes: () => nodeMetricsFromPool(pool.nodes(), (id) => placer.allocationOf(id)) })`.
 * Capacity is the schedulable part (capacity minus what is reserved for the system), so
 * capacity - allocated is what the scheduler can still place. Cheap: reads in-memory state.
 */
export function nodeMetricsFromPool(nodes: readonly Node[], allocationOf: (nodeId: string) => NodeAllocation | undefined): NodeMetricsSnapshot[] {
  return nodes.map((n) => {
    const allocated = allocationOf(n.id) ?? n.allocated;
    return {
      node: n.id,
      simulated: n.simulated,
      ready: n.ready,
      capacity: {
        cpuMillicores: Math.max(0, n.capacity.cpuMillicores - n.reserved.cpuMillicores),
        memoryBytes: Math.max(0, n.capacity.memoryMiB - n.reserved.memoryMiB) * MiB,
        gpus: n.capacity.gpus.length,
      },
      allocated: { cpuMillicores: allocated.cpuMillicores, memoryBytes: allocated.memoryMiB * MiB, gpus: allocated.gpuIds.length },
    };
  });
}
