import type { AgentSpec, Resources } from '../domain/agent.js';
import type { Node } from '../domain/node.js';

/**
 * What the scheduler sees of the cluster at one instant. Build a NodePool from it once and
 * reuse the pool for many decisions; passing a snapshot to Scheduler.schedule builds a
 * throw-away pool every call (O(n log n)).
 */
export interface SchedulingSnapshot {
  /** Every node, schedulable or not; `allocated` is what is already bound to each. */
  nodes: readonly Node[];
  /**
   * For topology spread: per spread group, per node id, how many agents of that group already
   * run on the node. Missing groups or nodes count 0. The caller decides what a group is
   * (a deployment, a tenant + label set, ...) and names it in SchedulingRequest.spreadGroup.
   */
  agentCountsByNode?: Readonly<Record<string, Readonly<Record<string, number>>>> | undefined;
}

/** The part of an AgentSpec the scheduler reads; a full AgentSpec fits. */
export interface SchedulableSpec
  extends Pick<AgentSpec, 'schedulingPolicy' | 'nodeSelector' | 'tolerations' | 'affinity' | 'topologySpread'> {
  resources: Pick<Resources, 'cpuMillicores' | 'memoryMiB' | 'gpu'>;
}

/** One agent to place. */
export interface SchedulingRequest {
  id: string;
  spec: SchedulableSpec;
  /**
   * Spread group whose counts `spec.topologySpread` balances (see
   * SchedulingSnapshot.agentCountsByNode); NodePool.assume counts the agent into it.
   * @default '' (all agents without a group share one)
   */
  spreadGroup?: string | undefined;
}
