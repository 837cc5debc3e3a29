import { MAX_NODE_SCORE } from './max-node-score.js';

/**
 * BalancedAllocation (the "balanced" policy, kube-scheduler v1.26+ formula): (1 - std dev of
 * the cpu and memory usage fractions) * 100, fractions capped at 1 and taken after placing
 * the agent. With two resources the standard deviation is |f_cpu - f_mem| / 2. A resource
 * with nothing allocatable is left out, as in kube-scheduler (one fraction: std dev 0).
 */
export function balancedAllocationScore(requestedCpu: number, allocatableCpu: number, requestedMemory: number, allocatableMemory: number): number {
  if (allocatableCpu <= 0 || allocatableMemory <= 0) return MAX_NODE_SCORE;
  const cpuFraction = Math.min(1, requestedCpu / allocatableCpu);
  const memoryFraction = Math.min(1, requestedMemory / allocatableMemory);
  const stdDev = Math.abs(cpuFraction - memoryFraction) / 2;
  return (1 - stdDev) * MAX_NODE_SCORE;
}
