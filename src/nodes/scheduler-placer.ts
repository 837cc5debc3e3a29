import { scanPages } from '../store/scan-pages.js';
import type { Agent } from '../domain/agent.js';
import { isTerminal } from '../domain/agent.js';
import { DomainError } from '../domain/errors.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Node, NodeAllocation } from '../domain/node.js';
import type { Bus } from '../bus/bus.js';
import type { Placement, Placer } from '../controllers/placer.js';
import { explainScores, NodePool, Scheduler, type SchedulingRequest } from '../scheduler/index.js';
import type { Store } from '../store/store.js';
import { StringInterner } from '../domain/string-interner.js';

/** Where the placer gets its nodes from (NodePoolService). */
export interface NodeSource {
  /** Every node with zero allocation (the placer adds its own accounting). */
  nodes(): readonly Node[];
  /** Called on any change of schedulability or capacity; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

export interface SchedulerPlacerOptions {
  nodes: NodeSource;
  scheduler: Scheduler;
  /** Waiting agents are queued here when room frees up. */
  bus: Bus;
  logger?: Logger | undefined;
}

/** What one agent holds on its node. */
interface Binding {
  nodeId: string;
  cpuMillicores: number;
  memoryMiB: number;
  /** Its length is the GPU count (a separate count field was 8 bytes per agent). */
  gpuIds: readonly string[];
  spreadGroup: string;
}

/** Shared by every binding without GPUs (nearly all). */
const NO_GPUS: readonly string[] = Object.freeze([]);

/** An agent that found no node, ordered for retries by priority (high first), then age. */
interface Waiting {
  request: SchedulingRequest;
  priority: number;
  createdAt: number;
}

/** Prefix of the throw-away assumptions a retry pass makes; no agent id contains NUL. */
const PROBE = '\u0000probe:';

/**
 * The Placer backed by the pure Scheduler and its NodePool assume cache.
 *
 * Accounting: `bindings` (agent -> node and what it holds) is the truth; the NodePool is a
 * cache of it plus the node list, rebuilt whenever a node changes (NodePool computes node
 * flags once) and otherwise updated in place with assume/release. `place` runs
 * schedule and assume with no await in between, so concurrent placements (the controller
 * reconciles many agents at once, but JavaScript runs one at a time) never over-commit.
 *
 * Retries: an agent that found no node is remembered; whenever room may have freed (a
 * release, a node Ready, uncordoned or healthy again) the waiting agents are tried in
 * priority order, then age, against a dry run of the scheduler, and those that would fit
 * now are queued on the bus (each dry run assumes its agent, so room is not promised twice;
 * the assumptions are dropped at the end of the pass). The controller's 5 s requeue of an
 * unschedulable agent is the fallback.
 */
export class SchedulerPlacer implements Placer {
  private readonly bindings = new Map<string, Binding>();
  private readonly waiting = new Map<string, Waiting>();
  /**
   * One string per spread group, shared by the bindings and the pool's assumptions of its
   * agents: spreadGroupOf() builds a new string per agent, though most share a few groups.
   */
  private readonly groups = new StringInterner();
  private pool: NodePool | undefined;
  private retryScheduled = false;
  private readonly logger: Logger;
  private readonly unsubscribe: () => void;

  constructor(private readonly o: SchedulerPlacerOptions) {
    this.logger = o.logger ?? silentLogger;
    this.unsubscribe = o.nodes.onChange(() => {
      this.pool = undefined;
      this.scheduleRetry();
    });
  }

  /**
   * Counts every live agent that already has a node (after a control-plane restart):
   * agents of the store that are not terminal, not being deleted, with status.node.
   */
  async rebuild(store: Store, signal?: AbortSignal): Promise<number> {
    // From scratch: bindings of an earlier term (another replica led in between, deleting
    // or moving agents) would otherwise stay counted forever.
    this.bindings.clear();
    this.waiting.clear();
    this.pool = undefined;
    let count = 0;
    for await (const agents of scanPages((afterId) => store.scanAgents({ phase: ['Pending', 'Starting', 'Running', 'Stopping'], limit: 1000, afterId }), signal)) {
      for (const agent of agents) {
        if (agent.status.node !== undefined && agent.desired !== 'deleted' && this.adopt(agent)) count++;
      }
    }
    return count;
  }

  async place(agent: Agent): Promise<Placement> {
    // place() is asked only for agents without a node, so a binding here is stale (an
    // adopt() that raced a NodeLost/drain update): give it back and decide afresh.
    if (this.bindings.has(agent.id)) this.release(agent.id);
    const request = toRequest(agent);
    request.spreadGroup = this.groups.intern(request.spreadGroup ?? '');
    const pool = this.currentPool();
    // No await from here to the assume: the decision and the accounting are one step.
    const decision = this.o.scheduler.schedule(request, pool);
    if (decision.unschedulable) {
      this.waiting.set(agent.id, { request, priority: agent.spec.priority, createdAt: agent.createdAt });
      return { ok: false, reason: 'Unschedulable', message: decision.message, data: { reasons: decision.reasons, examinedNodes: decision.examinedNodes } };
    }
    pool.applyDecision(request, decision);
    this.bindings.set(agent.id, {
      nodeId: decision.nodeId,
      cpuMillicores: request.spec.resources.cpuMillicores,
      memoryMiB: request.spec.resources.memoryMiB,
      gpuIds: decision.gpuIds.length === 0 ? NO_GPUS : decision.gpuIds,
      spreadGroup: request.spreadGroup ?? '',
    });
    this.waiting.delete(agent.id);
    const best = decision.scores[0];
    const score = best === undefined ? '' : `, score ${Math.round(best.score * 100) / 100}`;
    return {
      ok: true,
      nodeId: decision.nodeId,
      gpuIds: decision.gpuIds,
      message: `assigned to node ${decision.nodeId} (${agent.spec.schedulingPolicy}${score})`,
      data: {
        candidates: explainScores(decision),
        scores: decision.scores,
        weights: decision.weights,
        sampled: decision.sampled,
        examinedNodes: decision.examinedNodes,
        feasibleNodes: decision.feasibleNodes,
      },
    };
  }

  release(agentId: string): void {
    this.waiting.delete(agentId);
    const binding = this.bindings.get(agentId);
    if (!binding) return;
    this.bindings.delete(agentId);
    if (this.pool && !this.pool.release(agentId)) this.pool = undefined;
    this.scheduleRetry();
  }

  /**
   * Counts an agent that already has a node (status.node) and is not yet counted: after a
   * restart, or an agent started again on its old node. Counted even when the node is
   * full (it runs there whatever the books say; the books must say so). False when the
   * agent is terminal, has no node, is counted already, or its node is not in the pool.
   */
  adopt(agent: Agent): boolean {
    const nodeId = agent.status.node;
    if (nodeId === undefined || isTerminal(agent.status.phase) || this.bindings.has(agent.id)) return false;
    if (!this.o.nodes.nodes().some((n) => n.id === nodeId)) return false;
    const r = agent.spec.resources;
    const gpuIds = agent.status.gpuIds ?? [];
    const binding: Binding = { nodeId, cpuMillicores: r.cpuMillicores, memoryMiB: r.memoryMiB, gpuIds: gpuIds.length === 0 ? NO_GPUS : [...gpuIds], spreadGroup: this.groups.intern(spreadGroupOf(agent)) };
    this.bindings.set(agent.id, binding);
    this.waiting.delete(agent.id);
    if (this.pool && !this.tryAssume(this.pool, agent.id, binding)) this.pool = undefined;
    return true;
  }

  /** Node an agent is counted on, or undefined. */
  nodeOf(agentId: string): string | undefined {
    return this.bindings.get(agentId)?.nodeId;
  }

  /** What is counted on a node: cpu, memory, agents and GPU ids. */
  allocationOf(nodeId: string): NodeAllocation {
    const pool = this.currentPool();
    if (pool.indexOf(nodeId) >= 0) return pool.allocationOf(nodeId);
    return { cpuMillicores: 0, memoryMiB: 0, agents: 0, gpuIds: [] };
  }

  /** Agents that found no node and wait for room. */
  waitingCount(): number {
    return this.waiting.size;
  }

  close(): void {
    this.unsubscribe();
  }

  /**
   * The pool, rebuilt from the nodes and every binding when a node changed. A binding
   * that no longer fits (a node shrank, or an adopted agent over-committed it) is baked
   * into its node's base allocation instead, so it is still counted; release then
   * triggers another rebuild, since baked allocation cannot be given back in place.
   */
  private currentPool(): NodePool {
    if (this.pool) return this.pool;
    const nodes = this.o.nodes.nodes();
    let pool = NodePool.fromSnapshot({ nodes });
    const overflow: [string, Binding][] = [];
    for (const [agentId, binding] of this.bindings) {
      if (!this.tryAssume(pool, agentId, binding)) overflow.push([agentId, binding]);
    }
    if (overflow.length > 0) {
      const baked = new Map<string, Node>(nodes.map((n) => [n.id, { ...n, allocated: { ...n.allocated, gpuIds: [...n.allocated.gpuIds] } }]));
      for (const [, b] of overflow) {
        const n = baked.get(b.nodeId);
        if (!n) continue;
        n.allocated.cpuMillicores += b.cpuMillicores;
        n.allocated.memoryMiB += b.memoryMiB;
        n.allocated.agents += 1;
        n.allocated.gpuIds.push(...b.gpuIds.filter((g) => !n.allocated.gpuIds.includes(g)));
      }
      pool = NodePool.fromSnapshot({ nodes: [...baked.values()] });
      const bakedIds = new Set(overflow.map(([id]) => id));
      for (const [agentId, binding] of this.bindings) {
        if (!bakedIds.has(agentId) && !this.tryAssume(pool, agentId, binding)) {
          this.logger.warn({ agentId, node: binding.nodeId }, 'binding does not fit its node even after rebuild; not counted');
        }
      }
      this.logger.warn({ agents: overflow.length }, 'some agents over-commit their node (capacity shrank or they were started again there)');
    }
    this.pool = pool;
    return pool;
  }

  private tryAssume(pool: NodePool, agentId: string, b: Binding): boolean {
    if (pool.indexOf(b.nodeId) < 0) return true; // node left the pool: nothing to count against
    try {
      pool.assume(b.nodeId, agentId, { cpuMillicores: b.cpuMillicores, memoryMiB: b.memoryMiB, gpu: b.gpuIds.length }, b.gpuIds, b.spreadGroup);
      return true;
    } catch (err) {
      if (err instanceof DomainError) return false;
      throw err;
    }
  }

  private scheduleRetry(): void {
    if (this.retryScheduled || this.waiting.size === 0) return;
    this.retryScheduled = true;
    // Coalesces a burst of releases (an agent batch ending) into one pass.
    setImmediate(() => {
      this.retryScheduled = false;
      try {
        this.retryWaiting();
      } catch (err) {
        this.logger.warn({ err }, 'retrying waiting agents failed');
      }
    });
  }

  /** See the class comment: dry-run the waiting agents in order and queue those that fit. */
  private retryWaiting(): void {
    if (this.waiting.size === 0) return;
    const pool = this.currentPool();
    const ordered = [...this.waiting.entries()].sort(
      ([ida, a], [idb, b]) => b.priority - a.priority || a.createdAt - b.createdAt || (ida < idb ? -1 : ida > idb ? 1 : 0),
    );
    const probes: string[] = [];
    try {
      for (const [agentId, w] of ordered) {
        const probeId = PROBE + agentId;
        const decision = this.o.scheduler.schedule({ ...w.request, id: probeId }, pool);
        if (decision.unschedulable) continue;
        pool.applyDecision({ ...w.request, id: probeId }, decision);
        probes.push(probeId);
        this.o.bus.enqueue(agentId);
      }
    } finally {
      for (const id of probes) pool.release(id);
    }
  }
}

/**
 * The spread group topology spread balances: agents of one tenant with the same labels
 * (without deployments, the labels are what marks replicas of one workload).
 */
export function spreadGroupOf(agent: Agent): string {
  const labels = Object.entries(agent.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${agent.tenantId}/${JSON.stringify(labels)}`;
}

/** The scheduler's view of an agent. */
export function toRequest(agent: Agent): SchedulingRequest {
  const s = agent.spec;
  return {
    id: agent.id,
    spec: {
      resources: { cpuMillicores: s.resources.cpuMillicores, memoryMiB: s.resources.memoryMiB, gpu: s.resources.gpu },
      schedulingPolicy: s.schedulingPolicy,
      nodeSelector: s.nodeSelector,
      tolerations: s.tolerations,
      affinity: s.affinity,
      topologySpread: s.topologySpread,
    },
    spreadGroup: spreadGroupOf(agent),
  };
}
