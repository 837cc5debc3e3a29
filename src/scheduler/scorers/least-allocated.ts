import { MAX_NODE_SCORE } from './max-node-score.js';

/** (allocatable - requested) * 100 / allocatable; 0 when nothing is allocatable or the request overflows. */
export function leastRequestedResourceScore(requested: number, allocatable: number): number {
  if (allocatable <= 0 || requested > allocatable) return 0;
  return ((allocatable - requested) * MAX_NODE_SCORE) / allocatable;
}

/**
 * LeastAllocated (the "spread" policy): the mean over cpu and memory of the share left free
 * after placing the agent. `requested*` already include the agent's own request. Unlike
 * kube-scheduler the result keeps its fraction (no integer truncation), so nodes that differ
 * slightly are still ordered instead of tying.
 */
export function leastAllocatedScore(requestedCpu: number, allocatableCpu: number, requestedMemory: number, allocatableMemory: number): number {
  return (leastRequestedResourceScore(requestedCpu, allocatableCpu) + leastRequestedResourceScore(requestedMemory, allocatableMemory)) / 2;
}
