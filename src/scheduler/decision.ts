/** Names of the score plugins, as they appear in breakdowns and weights. */
export type ScorePluginName = 'LeastAllocated' | 'MostAllocated' | 'BalancedAllocation' | 'NodeAffinity' | 'TaintToleration';

/** Unweighted 0..100 score per plugin that took part (weight > 0). */
export type ScoreBreakdown = Partial<Record<ScorePluginName, number>>;

export interface CandidateScore {
  nodeId: string;
  /** Weighted sum: sum over plugins of weight * breakdown[plugin]. */
  score: number;
  breakdown: ScoreBreakdown;
}

/** The agent has a node. */
export interface ScheduledDecision {
  unschedulable: false;
  nodeId: string;
  /** Devices to give the agent: the lowest free ids on the node, `resources.gpu` of them. */
  gpuIds: string[];
  /** Best candidates, best first (the first is `nodeId`); length <= config.topCandidates. */
  scores: CandidateScore[];
  /** Weights the scores were computed with. */
  weights: ScoreBreakdown;
  /**
   * True when node sampling (percentageOfNodesToScore) cut the scan short: then `nodeId` is
   * the best among the `feasibleNodes` nodes found, not necessarily the best in the pool.
   */
  sampled: boolean;
  /** Nodes run through the filters. */
  examinedNodes: number;
  /** Nodes that passed every filter and were scored. */
  feasibleNodes: number;
}

/** No node passed every filter. */
export interface UnschedulableDecision {
  unschedulable: true;
  /** kube-scheduler style, e.g. "0/3 nodes are available: 2 insufficient memory, 1 cordoned." */
  message: string;
  /**
   * Nodes per reason; each node counts once, under the first filter it failed, so the counts
   * add up to the number of nodes. Keys in message order: count descending, then reason.
   */
  reasons: Record<string, number>;
  examinedNodes: number;
}

export type ScheduleDecision = ScheduledDecision | UnschedulableDecision;
