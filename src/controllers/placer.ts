import type { Agent } from '../domain/agent.js';

export type Placement =
  | { ok: true; nodeId: string; gpuIds: string[]; message: string; data?: unknown }
  | { ok: false; reason: string; message: string; data?: unknown };

/**
 * Chooses a node for a pending agent and reserves room on it. The scheduler-backed
 * placer does filtering/scoring with atomic accounting; `release` gives the room back
 * when the agent ends or is deleted.
 */
export interface Placer {
  place(agent: Agent, signal?: AbortSignal): Promise<Placement>;
  release(agentId: string): void;
  /**
   * Counts an agent that already has a node (status.node) but is not counted yet: after a
   * control-plane restart, or an agent started again on its old node. Optional: a placer
   * without accounting has nothing to count.
   */
  adopt?(agent: Agent): void;
}
