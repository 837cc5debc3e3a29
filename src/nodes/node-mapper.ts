import type { Node, NodeAllocation } from '../domain/node.js';
import { formatCpu, formatMemory } from '../domain/quantity.js';
import type { NodeInfo } from '../runtime/runtime.js';
import type { NodeResponse } from '../api/schemas/node-schema.js';
import type { NodeReadyCondition } from './node-pool-service.js';

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());
const amounts = (cpuMillicores: number, memoryMiB: number) => ({ cpu: formatCpu(cpuMillicores), memory: formatMemory(memoryMiB), cpuMillicores, memoryMiB });

/** Domain node + its condition, runtime info and the placer's allocation -> API JSON. */
export function toNodeResponse(node: Node, condition: NodeReadyCondition, info: NodeInfo | undefined, allocated: NodeAllocation): NodeResponse {
  const cap = node.capacity;
  const allocatableCpu = Math.max(0, cap.cpuMillicores - node.reserved.cpuMillicores);
  const allocatableMemory = Math.max(0, cap.memoryMiB - node.reserved.memoryMiB);
  return {
    id: node.id,
    driver: node.driver,
    simulated: node.simulated,
    labels: node.labels,
    taints: node.taints.map((t) => (t.value === undefined ? { key: t.key, effect: t.effect } : { key: t.key, value: t.value, effect: t.effect })),
    capacity: { ...amounts(cap.cpuMillicores, cap.memoryMiB), maxAgents: cap.maxAgents, gpus: cap.gpus.map((g) => ({ id: g.id, model: g.model, ...(g.memoryMiB !== undefined ? { memoryMiB: g.memoryMiB } : {}) })) },
    reserved: amounts(node.reserved.cpuMillicores, node.reserved.memoryMiB),
    allocatable: { ...amounts(allocatableCpu, allocatableMemory), maxAgents: cap.maxAgents, gpus: cap.gpus.length },
    allocated: { ...amounts(allocated.cpuMillicores, allocated.memoryMiB), agents: allocated.agents, gpus: allocated.gpuIds.length, gpuIds: allocated.gpuIds },
    // Negative when over-committed (an agent started again on a full node): shown, not hidden.
    free: {
      ...amounts(allocatableCpu - allocated.cpuMillicores, allocatableMemory - allocated.memoryMiB),
      agents: cap.maxAgents - allocated.agents,
      gpus: cap.gpus.length - allocated.gpuIds.length,
    },
    agents: allocated.agents,
    conditions: [
      {
        type: 'Ready',
        status: condition.status,
        reason: condition.reason,
        message: condition.message,
        ...(condition.lastHeartbeatTime !== undefined ? { lastHeartbeatTime: iso(condition.lastHeartbeatTime)! } : {}),
        lastTransitionTime: iso(condition.lastTransitionTime)!,
      },
    ],
    ready: node.ready,
    cordoned: node.cordoned,
    unhealthy: node.unhealthy,
    ...(info ? { info: { os: info.os, arch: info.arch, runtimeVersion: info.runtimeVersion, isolationClasses: info.isolationClasses } } : {}),
  };
}
