/** Options of NodeHealthTracker; every field has a default. */
export interface NodeHealthOptions {
  /** Agent failures on one node within `windowMs` that mark it unhealthy. @default 5 */
  failureThreshold?: number | undefined;
  /** @default 300_000 (5 min) */
  windowMs?: number | undefined;
}

/**
 * Agent failure reasons that point at the node rather than at the agent: the runtime
 * could not start a container, or did not start it in time. A user's own exit code, an
 * OOM kill or a missing image say nothing about the node and are not counted.
 */
export const NODE_FAULT_REASONS: ReadonlySet<string> = new Set(['StartError', 'StartTimeout']);

/**
 * Counts node-fault failures per node in a sliding window and says when a node crosses
 * the threshold. Pure bookkeeping (the caller passes the time): the node pool service
 * turns a crossing into the unhealthy mark and clears it after a cool-down.
 */
export class NodeHealthTracker {
  readonly failureThreshold: number;
  readonly windowMs: number;
  private readonly failures = new Map<string, number[]>();

  constructor(options: NodeHealthOptions = {}) {
    this.failureThreshold = options.failureThreshold ?? 5;
    this.windowMs = options.windowMs ?? 300_000;
  }

  /** Records one failure; true when the node now has at least `failureThreshold` in the window. */
  recordFailure(nodeId: string, nowMs: number): boolean {
    const recent = (this.failures.get(nodeId) ?? []).filter((t) => nowMs - t < this.windowMs);
    recent.push(nowMs);
    this.failures.set(nodeId, recent);
    return recent.length >= this.failureThreshold;
  }

  /** Failures of the node still in the window. */
  count(nodeId: string, nowMs: number): number {
    return (this.failures.get(nodeId) ?? []).filter((t) => nowMs - t < this.windowMs).length;
  }

  /** Forgets the node's failures (after the mark is set or cleared: each mark needs fresh failures). */
  reset(nodeId: string): void {
    this.failures.delete(nodeId);
  }
}
