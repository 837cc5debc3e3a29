/** Below this many nodes every node is examined; also the floor of the sample. */
export const DEFAULT_MIN_FEASIBLE_NODES_TO_FIND = 100;
/** The adaptive percentage never goes below this. */
export const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5;

/**
 * kube-scheduler's numFeasibleNodesToFind: how many feasible nodes to find before scoring.
 * `percentage` 0 means adaptive: max(5, 50 - nodes/125) percent (integer arithmetic), so
 * 1,000 nodes -> 42 %, 5,000 -> 10 %, 10,000 -> 5 %. Never fewer than `minFeasibleNodesToFind`.
 */
export function numFeasibleNodesToFind(totalNodes: number, percentage: number, minFeasibleNodesToFind = DEFAULT_MIN_FEASIBLE_NODES_TO_FIND): number {
  if (totalNodes < minFeasibleNodesToFind || percentage >= 100) return totalNodes;
  let pct = percentage;
  if (pct <= 0) pct = Math.max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND, 50 - Math.trunc(totalNodes / 125));
  const count = Math.trunc((totalNodes * pct) / 100);
  return Math.min(totalNodes, Math.max(count, minFeasibleNodesToFind));
}
