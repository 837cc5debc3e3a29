import { REASONS } from '../reasons.js';

/**
 * Fit (NodeResourcesFit): the agent count, CPU and memory request must fit in what is free
 * (allocatable - allocated). As in kube-scheduler a zero request is never checked, so an
 * over-committed node still accepts agents that request nothing of that resource. Checked in
 * the order agents, cpu, memory; the first failure is the reason.
 */
export function fitFilter(
  freeCpuMillicores: number,
  freeMemoryMiB: number,
  freeAgentSlots: number,
  request: { readonly cpuMillicores: number; readonly memoryMiB: number },
): string | null {
  if (freeAgentSlots < 1) return REASONS.tooManyAgents;
  if (request.cpuMillicores > 0 && request.cpuMillicores > freeCpuMillicores) return REASONS.insufficientCpu;
  if (request.memoryMiB > 0 && request.memoryMiB > freeMemoryMiB) return REASONS.insufficientMemory;
  return null;
}
