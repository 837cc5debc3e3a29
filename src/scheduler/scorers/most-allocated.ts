import { MAX_NODE_SCORE } from './max-node-score.js';

/** requested * 100 / allocatable, capped at 100; 0 when nothing is allocatable. */
export function mostRequestedResourceScore(requested: number, allocatable: number): number {
  if (allocatable <= 0) return 0;
  if (requested >= allocatable) return MAX_NODE_SCORE;
  return (requested * MAX_NODE_SCORE) / allocatable;
}

/**
 * MostAllocated (the "pack" policy): the mean over cpu and memory of the share in use after
 * placing the agent. `requested*` already include the agent's own request.
 */
export function mostAllocatedScore(requestedCpu: number, allocatableCpu: number, requestedMemory: number, allocatableMemory: number): number {
  return (mostRequestedResourceScore(requestedCpu, allocatableCpu) + mostRequestedResourceScore(requestedMemory, allocatableMemory)) / 2;
}
