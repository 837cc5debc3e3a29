import type { SchedulingPolicy } from '../domain/agent.js';
import { InputError } from '../domain/errors.js';
import { DEFAULT_MIN_FEASIBLE_NODES_TO_FIND } from './num-feasible-nodes-to-find.js';

/** Weights of the resource score plugins a policy uses. */
export interface ResourceWeights {
  LeastAllocated: number;
  MostAllocated: number;
  BalancedAllocation: number;
}

/** Options for the Scheduler; every field optional. */
export interface SchedulerOptions {
  /**
   * Resource plugin weights per policy. A policy given here replaces that policy's defaults
   * entirely (missing plugins weigh 0).
   * @default spread: LeastAllocated 1; pack: MostAllocated 1; balanced: BalancedAllocation 1 + LeastAllocated 1
   */
  policyWeights?: Partial<Record<SchedulingPolicy, Partial<ResourceWeights>>>;
  /** Weight of preferred node affinity. @default 2 */
  nodeAffinityWeight?: number;
  /** Weight of the PreferNoSchedule taint score. @default 1 */
  taintTolerationWeight?: number;
  /**
   * Stop filtering once enough feasible nodes are found (kube-scheduler's
   * percentageOfNodesToScore). Buys speed on big pools; costs optimality: the chosen node is
   * the best of the nodes examined, which start at a rotating offset. Pools of at most
   * `minFeasibleNodesToFind` nodes are always scanned fully.
   * @default true
   */
  sampling?: boolean;
  /** Percent of nodes to find when sampling; 0 = adaptive max(5, 50 - nodes/125). @default 0 */
  percentageOfNodesToScore?: number;
  /** Sampling floor and the pool size below which sampling is off. @default 100 */
  minFeasibleNodesToFind?: number;
  /** How many best candidates a decision reports with their breakdown. @default 3 */
  topCandidates?: number;
}

export interface CompiledSchedulerConfig {
  policyWeights: Record<SchedulingPolicy, ResourceWeights>;
  nodeAffinityWeight: number;
  taintTolerationWeight: number;
  sampling: boolean;
  percentageOfNodesToScore: number;
  minFeasibleNodesToFind: number;
  topCandidates: number;
}

const DEFAULT_POLICY_WEIGHTS: Record<SchedulingPolicy, ResourceWeights> = {
  spread: { LeastAllocated: 1, MostAllocated: 0, BalancedAllocation: 0 },
  pack: { LeastAllocated: 0, MostAllocated: 1, BalancedAllocation: 0 },
  balanced: { LeastAllocated: 1, MostAllocated: 0, BalancedAllocation: 1 },
};

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new InputError(`scheduler option ${name} must be a finite number >= 0, got ${value}`, { option: name, value });
  return value;
}

function integerIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InputError(`scheduler option ${name} must be an integer in [${min}, ${max}], got ${value}`, { option: name, value });
  }
  return value;
}

/** Apply defaults and validate; throws InputError naming the bad option. */
export function compileSchedulerConfig(options: SchedulerOptions = {}): CompiledSchedulerConfig {
  const policyWeights = { ...DEFAULT_POLICY_WEIGHTS };
  for (const policy of Object.keys(options.policyWeights ?? {}) as SchedulingPolicy[]) {
    const given = options.policyWeights?.[policy];
    if (given === undefined) continue;
    if (!(policy in DEFAULT_POLICY_WEIGHTS)) throw new InputError(`scheduler option policyWeights has unknown policy "${policy}"`, { policy });
    policyWeights[policy] = {
      LeastAllocated: nonNegative(`policyWeights.${policy}.LeastAllocated`, given.LeastAllocated ?? 0),
      MostAllocated: nonNegative(`policyWeights.${policy}.MostAllocated`, given.MostAllocated ?? 0),
      BalancedAllocation: nonNegative(`policyWeights.${policy}.BalancedAllocation`, given.BalancedAllocation ?? 0),
    };
  }
  return {
    policyWeights,
    nodeAffinityWeight: nonNegative('nodeAffinityWeight', options.nodeAffinityWeight ?? 2),
    taintTolerationWeight: nonNegative('taintTolerationWeight', options.taintTolerationWeight ?? 1),
    sampling: options.sampling ?? true,
    percentageOfNodesToScore: integerIn('percentageOfNodesToScore', options.percentageOfNodesToScore ?? 0, 0, 100),
    minFeasibleNodesToFind: integerIn('minFeasibleNodesToFind', options.minFeasibleNodesToFind ?? DEFAULT_MIN_FEASIBLE_NODES_TO_FIND, 1, Number.MAX_SAFE_INTEGER),
    topCandidates: integerIn('topCandidates', options.topCandidates ?? 3, 1, 1000),
  };
}
