import { scanPages } from '../store/scan-pages.js';
import type { Agent, AgentStatus } from '../domain/agent.js';
import { isTerminal } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { VersionConflictError } from '../domain/errors.js';
import type { Logger } from '../domain/logger.js';
import type { Bus } from '../bus/bus.js';
import type { EventRecorder } from '../controllers/event-recorder.js';
import type { LeaderFence } from '../controllers/agent-controller.js';
import { FencedOutError } from '../store/fenced-out-error.js';
import { containerName } from '../runtime/runtime.js';
import type { RuntimeRegistry } from '../runtime/runtime-registry.js';
import type { Store } from '../store/store.js';
import { NODE_EVENT_REASONS } from './node-events.js';
import type { DecisionEvent } from '../controllers/agent-decision.js';
import { phaseChangedEvent, withPhaseChange } from '../controllers/phase-change-events.js';

/** Phases in which an agent holds (or is about to hold) room on its node. */
const LIVE_PHASES = ['Pending', 'Starting', 'Running', 'Stopping', 'Deleting'] as const;
const CONCURRENCY = 8;
const MAX_CONFLICT_RETRIES = 20;

export interface NodeEvictorDeps {
  store: Store;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  events: EventRecorder;
  runtimes: RuntimeRegistry;
  /** Gives the agent's room on its node back (SchedulerPlacer.release). */
  release: (agentId: string) => void;
  /** SIGTERM grace when drain stops a container. */
  stopGraceMs: number;
  /**
   * With several replicas (leader election) every one sees a node go NotReady; only the
   * leader moves its agents, so the work (and its events) happens once: nodeLost does
   * nothing outside a term begun with lead(), and its writes carry that term's fencing
   * token, so a deposed leader waking mid-pass cannot mark agents lost from a stale view.
   * @default false (a single replica: always leads, writes unfenced)
   */
  leaderElection?: boolean;
}

/** What happened to the agents of a lost node. */
export interface NodeLostResult {
  /** OnFailure/Always agents sent back to the scheduler. */
  rescheduled: number;
  /** Never agents failed with reason NodeLost. */
  failed: number;
  /** Agents that were being stopped: recorded as Stopped. */
  stopped: number;
}

/** What a drain did. */
export interface DrainResult {
  /** OnFailure/Always agents whose container was removed and who wait for another node. */
  rescheduled: number;
  /** Never agents (and agents being stopped or deleted) left to finish on the node. */
  remaining: number;
  /** Agents whose move failed (see the logs); a second drain retries them. */
  errors: number;
}

/**
 * Moves agents off a node, for two reasons:
 * - node lost (NotReady): the node cannot be asked, so only the records change.
 *   OnFailure/Always agents go back to Pending (reason NodeLost) without node, container
 *   or GPUs, and the scheduler places them elsewhere; Never agents fail with NodeLost
 *   (their record keeps the node, so when it returns the controller stops the container
 *   and its logs can be read). The old containers are removed by the controller's orphan
 *   sweep when the node answers again: their agent's status.node then names another node.
 * - drain: the node answers, so each restartable agent's container is stopped and removed
 *   first, then the record goes back to Pending (reason Drained). Never agents stay and run
 *   to completion: moving them would mean running them twice.
 *
 * Every record change is a compare-and-set on the agent's version, re-read on conflict, so
 * it composes with the agent controller working on the same agents at the same time.
 */
export class NodeEvictor {
  /** The term this replica leads, with leader election; cleared when its signal aborts. */
  private term: (LeaderFence & { signal: AbortSignal }) | undefined;

  constructor(private readonly d: NodeEvictorDeps) {}

  /**
   * Begins a term (LeaderElector's `lead`): until `signal` aborts, nodeLost acts, fenced
   * with `fence.fencingToken`; a write refused as fenced out calls `fence.stepDown`.
   */
  lead(signal: AbortSignal, fence: LeaderFence): void {
    if (signal.aborted) return;
    const term = { ...fence, signal };
    this.term = term;
    signal.addEventListener('abort', () => {
      if (this.term === term) this.term = undefined;
    }, { once: true });
  }

  async nodeLost(nodeId: string, signal?: AbortSignal): Promise<NodeLostResult> {
    const result: NodeLostResult = { rescheduled: 0, failed: 0, stopped: 0 };
    // The term is taken once, at the start: the whole pass writes with its token, and
    // stops when it ends, even if a newer term of this replica begins meanwhile.
    const term = this.term;
    if (this.d.leaderElection && (term === undefined || term.signal.aborted)) return result;
    const fencingToken = this.d.leaderElection ? term?.fencingToken : undefined;
    const agents = await this.agentsOn(nodeId, signal);
    let fencedOut = false;
    await forEachLimited(agents, CONCURRENCY, async (listed) => {
      if (fencedOut || term?.signal.aborted) return;
      const outcome = await this.update(listed.id, fencingToken, (a, now) => {
        if (a.status.node !== nodeId || isTerminal(a.status.phase) || a.desired === 'deleted') return undefined;
        if (a.desired === 'stopped') {
          const message = `node ${nodeId} not ready while stopping; recorded as stopped`;
          return { kind: 'stopped' as const, status: { ...a.status, phase: 'Stopped', reason: 'NodeLost', message, finishedAt: now, phaseSince: now, nextAttemptAt: undefined }, event: { type: 'Normal' as const, reason: NODE_EVENT_REASONS.nodeLost, message } };
        }
        if (a.spec.restartPolicy === 'Never') {
          const message = `node ${nodeId} not ready; restartPolicy Never, so the agent is not moved`;
          return { kind: 'failed' as const, status: { ...a.status, phase: 'Failed', reason: 'NodeLost', message, finishedAt: now, phaseSince: now, nextAttemptAt: undefined }, event: { type: 'Warning' as const, reason: NODE_EVENT_REASONS.nodeLost, message } };
        }
        const message = `node ${nodeId} not ready; rescheduling`;
        return { kind: 'rescheduled' as const, status: unbound(a.status, now, 'NodeLost', message), event: { type: 'Warning' as const, reason: NODE_EVENT_REASONS.nodeLost, message } };
      }).catch((err: unknown) => {
        if (!(err instanceof FencedOutError) || term === undefined) throw err;
        // A newer leader has taken over: this replica's view is stale. Stop the pass
        // (the new leader handles the node) and end the term.
        if (!fencedOut) {
          fencedOut = true;
          this.d.logger.warn({ node: nodeId, fencingToken, recordedToken: err.recordedToken }, 'node-lost pass fenced out by a newer leader; stopping it and stepping down');
          term.stepDown(err.message);
        }
        return undefined;
      });
      if (outcome === undefined) return;
      result[outcome.kind]++;
    });
    return result;
  }

  async drain(nodeId: string, signal?: AbortSignal): Promise<DrainResult> {
    const result: DrainResult = { rescheduled: 0, remaining: 0, errors: 0 };
    const agents = await this.agentsOn(nodeId, signal);
    const runtime = this.d.runtimes.get(nodeId);
    await forEachLimited(agents, CONCURRENCY, async (listed) => {
      if (listed.spec.restartPolicy === 'Never' || listed.desired !== 'running') {
        result.remaining++;
        return;
      }
      try {
        // Record first, then stop: unbound in the store, the agent is the scheduler's again,
        // so the container's exit (seen by the controller during the stop) cannot be taken
        // for the end of the workload (an OnFailure agent exiting 0 on SIGTERM would
        // otherwise end Succeeded instead of moving). The orphan sweep backs up the removal.
        const outcome = await this.update(listed.id, undefined, (a, now) => {
          if (a.status.node !== nodeId || isTerminal(a.status.phase) || a.desired !== 'running') return undefined;
          return {
            kind: 'rescheduled' as const,
            status: unbound(a.status, now, 'Drained', `node ${nodeId} drained; waiting for another node`),
            event: { type: 'Normal' as const, reason: NODE_EVENT_REASONS.drained, message: `node ${nodeId} drained: its container is stopped and removed there, and the agent rescheduled` },
          };
        });
        if (outcome === undefined) return;
        if (runtime) {
          // Stop before remove: the agent gets its SIGTERM grace, as on any stop.
          await runtime.stop(containerName(listed.id), this.d.stopGraceMs, signal);
          await runtime.remove(containerName(listed.id), signal);
        }
        result.rescheduled++;
      } catch (err) {
        if (signal?.aborted) throw err;
        result.errors++;
        this.d.logger.warn({ err, agentId: listed.id, node: nodeId }, 'drain could not move agent');
      }
    });
    return result;
  }

  /** Non-terminal agents recorded on the node, every page. */
  private async agentsOn(nodeId: string, signal?: AbortSignal): Promise<Agent[]> {
    const out: Agent[] = [];
    for await (const items of scanPages((afterId) => this.d.store.scanAgents({ node: nodeId, phase: [...LIVE_PHASES], limit: 1000, afterId }), signal)) out.push(...items);
    return out;
  }

  /**
   * Compare-and-set loop: `mutate` sees the current record and returns the new status and
   * the event that explains it, or undefined when nothing is to be done any more. The event
   * is stored in the same transaction as the change and names the phase change
   * (data.from/to), as the controller's are. On success the room is released, the agent is
   * queued for the controller and the phase change is published. With `fencingToken`
   * the write is fenced (FencedOutError once a newer leader recorded its token).
   */
  private async update<K extends string>(
    agentId: string,
    fencingToken: number | undefined,
    mutate: (agent: Agent, nowMs: number) => { kind: K; status: AgentStatus; event: DecisionEvent } | undefined,
  ): Promise<{ kind: K; agent: Agent } | undefined> {
    for (let attempt = 0; ; attempt++) {
      const agent = await this.d.store.getAgent(agentId);
      if (!agent) return undefined;
      const now = this.d.clock.now();
      const change = mutate(agent, now);
      if (!change) return undefined;
      try {
        const { agent: updated, events: stored } = await this.d.store.updateAgentWithEvents(
          agent,
          { status: change.status, updatedAt: now },
          withPhaseChange(agent.status, change.status, [change.event]).map((e) => this.d.events.stamp({ tenantId: agent.tenantId, objectKind: 'Agent', objectId: agent.id, ...e })),
          fencingToken,
        );
        this.d.events.published(stored);
        this.d.release(agentId);
        this.d.bus.enqueue(agentId);
        if (updated.status.phase !== agent.status.phase) this.d.bus.publish(phaseChangedEvent(agent, agent.status.phase, updated.status.phase, now));
        return { kind: change.kind, agent: updated };
      } catch (err) {
        if (err instanceof VersionConflictError && attempt < MAX_CONFLICT_RETRIES) continue;
        throw err;
      }
    }
  }
}

/** Back to Pending without node, container or GPUs, so the scheduler places the agent anew. */
function unbound(status: AgentStatus, nowMs: number, reason: string, message: string): AgentStatus {
  const next: AgentStatus = { ...status, phase: 'Pending', reason, message, phaseSince: nowMs };
  delete next.node;
  delete next.containerId;
  delete next.gpuIds;
  delete next.nextAttemptAt;
  return next;
}

async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
