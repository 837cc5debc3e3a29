import type { Clock } from '../domain/clock.js';
import { NotFoundError } from '../domain/errors.js';
import type { Logger } from '../domain/logger.js';
import type { GpuDevice, Node, Taint } from '../domain/node.js';
import type { PlatformEvent } from '../domain/event.js';
import type { Bus } from '../bus/bus.js';
import type { EventRecorder } from '../controllers/event-recorder.js';
import type { NodeInfo, Runtime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import { discoverLocalGpus } from './gpu-discovery.js';
import type { DrainResult, NodeEvictor, NodeLostResult } from './node-evictor.js';
import { NODE_EVENT_REASONS, NODE_EVENT_TENANT } from './node-events.js';
import { NODE_FAULT_REASONS, NodeHealthTracker } from './node-health-tracker.js';
import { linkSignals } from '../domain/linked-signal.js';

/** One node as wired: its runtime plus what the config says about it. */
export interface NodeDefinition {
  id: string;
  /** "docker" | "simulated" | ... (the runtime's driver). */
  driver: string;
  /** In-memory node of the simulated runtime: its capacity is not real. */
  simulated: boolean;
  runtime: Runtime;
  labels: Record<string, string>;
  taints: Taint[];
  reserved: { cpuMillicores: number; memoryMiB: number };
  maxAgents: number;
  /** Replace what runtime.info() reports (tests, hosts shared with other work). */
  capacityOverride?: { cpuMillicores?: number | undefined; memoryMiB?: number | undefined } | undefined;
  /** Configured GPUs; undefined: none, or discovered when `discoverGpus`. */
  gpus?: GpuDevice[] | undefined;
  /** Ask nvidia-smi on this host (only for the node that is this host's own Docker). */
  discoverGpus?: boolean | undefined;
}

/** The Ready condition, as Kubernetes shows it. */
export interface NodeReadyCondition {
  type: 'Ready';
  /** Unknown: not heard from since this control plane started. */
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  /** Last successful heartbeat (ms epoch). */
  lastHeartbeatTime?: number | undefined;
  lastTransitionTime: number;
}

/** Options of NodePoolService; durations in ms. */
export interface NodePoolServiceOptions {
  store: Store;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  events: EventRecorder;
  evictor: NodeEvictor;
  nodes: NodeDefinition[];
  /** @default 2_000 */
  heartbeatIntervalMs?: number | undefined;
  /** No successful heartbeat for this long: NotReady. @default 10_000 */
  graceMs?: number | undefined;
  /** Deadline of one ping (+ info). @default clamp(graceMs / 2, 1_000, 5_000) */
  pingTimeoutMs?: number | undefined;
  /** Node-fault agent failures (see NODE_FAULT_REASONS) within `unhealthyWindowMs` that mark a node unhealthy. @default 5 */
  unhealthyFailureThreshold?: number | undefined;
  /** @default 300_000 */
  unhealthyWindowMs?: number | undefined;
  /** An unhealthy mark clears on its own after this long (or at once on uncordon). @default 300_000 */
  unhealthyCooldownMs?: number | undefined;
  /** Finds this host's GPUs; tests pass a fake. @default nvidia-smi */
  discoverGpus?: ((signal?: AbortSignal) => Promise<GpuDevice[]>) | undefined;
}

/** Why the pool changed; the scheduler-backed placer rebuilds its snapshot on any of them. */
export type NodeChange = 'ready' | 'notReady' | 'cordon' | 'uncordon' | 'unhealthy' | 'healthy' | 'capacity';

interface NodeState {
  def: NodeDefinition;
  info?: NodeInfo | undefined;
  gpus: GpuDevice[];
  gpusDiscovered: boolean;
  ready: boolean;
  condition: NodeReadyCondition;
  cordoned: boolean;
  unhealthy: boolean;
  unhealthySince?: number | undefined;
  labels?: Record<string, string> | undefined;
  taints?: Taint[] | undefined;
  /** Agents of a NotReady node still to be moved (retried each heartbeat until it succeeds). */
  evictionPending: boolean;
  lastError?: string | undefined;
}

/**
 * The nodes of the platform and their health: heartbeats (ping every interval; no
 * answer for the grace period -> NotReady, no new agents, and the node's agents are
 * moved by the NodeEvictor; an answer -> Ready again), capacity from runtime.info() (or
 * config overrides), GPUs from config or nvidia-smi, cordon/uncordon/drain (persisted in
 * the store), and the unhealthy mark for nodes whose agents keep failing to start.
 * Condition changes are recorded as Node events.
 *
 * `nodes()` gives Node objects with zero allocation: accounting is the placer's job.
 */
export class NodePoolService {
  readonly heartbeatIntervalMs: number;
  readonly graceMs: number;
  readonly pingTimeoutMs: number;
  readonly unhealthyCooldownMs: number;
  private readonly states = new Map<string, NodeState>();
  private readonly order: string[];
  private readonly health: NodeHealthTracker;
  private readonly listeners = new Set<(nodeId: string, change: NodeChange) => void>();
  private readonly discover: (signal?: AbortSignal) => Promise<GpuDevice[]>;
  private abort: AbortController | undefined;
  private loops: Promise<void>[] = [];
  /**
   * Wakes of the heartbeat loops asleep between beats. One abort listener wakes them all:
   * a listener per sleeping loop on the shared signal makes each addEventListener walk
   * every other (EventTarget checks for duplicates), O(nodes) per beat at 5,000 nodes.
   */
  private readonly sleepers = new Set<() => void>();
  /**
   * Deadlines of the heartbeats in flight, aborted together when the service stops. Not
   * AbortSignal.any per beat: each one registers a WeakRef on the long-lived service
   * signal, and at 2,500 beats a second Node 20 keeps tens of thousands of them (MiBs).
   */
  private readonly beatsInFlight = new Set<AbortController>();
  private unsubscribe: (() => void) | undefined;
  private startedAt = 0;
  private cache: Node[] | undefined;

  constructor(private readonly o: NodePoolServiceOptions) {
    this.heartbeatIntervalMs = o.heartbeatIntervalMs ?? 2_000;
    this.graceMs = o.graceMs ?? 10_000;
    this.pingTimeoutMs = o.pingTimeoutMs ?? Math.min(5_000, Math.max(1_000, Math.floor(this.graceMs / 2)));
    this.unhealthyCooldownMs = o.unhealthyCooldownMs ?? 300_000;
    this.health = new NodeHealthTracker({ failureThreshold: o.unhealthyFailureThreshold, windowMs: o.unhealthyWindowMs });
    this.discover = o.discoverGpus ?? discoverLocalGpus;
    const now = o.clock.now();
    for (const def of o.nodes) {
      this.states.set(def.id, {
        def,
        gpus: def.gpus ?? [],
        gpusDiscovered: false,
        ready: false,
        condition: { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'no heartbeat yet', lastTransitionTime: now },
        cordoned: false,
        unhealthy: false,
        evictionPending: false,
      });
    }
    this.order = [...this.states.keys()].sort();
  }

  /**
   * Loads the persisted cordon/unhealthy marks, runs one heartbeat round (so nodes that
   * answer are Ready before the first agent is placed), then heartbeats on a timer.
   */
  async start(): Promise<void> {
    if (this.abort) return;
    const abort = new AbortController();
    this.abort = abort;
    this.startedAt = this.o.clock.now();
    for (const saved of await this.o.store.listNodeStates()) {
      const s = this.states.get(saved.id);
      if (!s) continue;
      s.cordoned = saved.cordoned;
      s.unhealthy = saved.unhealthy;
      s.unhealthySince = saved.unhealthy ? saved.updatedAt : undefined;
      s.labels = saved.labels;
      s.taints = saved.taints;
    }
    this.unsubscribe = this.o.bus.subscribe((e) => this.onEvent(e));
    abort.signal.addEventListener(
      'abort',
      () => {
        for (const wake of this.sleepers) wake();
        this.sleepers.clear();
        for (const beat of this.beatsInFlight) beat.abort(abort.signal.reason);
        this.beatsInFlight.clear();
      },
      { once: true },
    );
    await Promise.all(this.order.map((id) => this.beat(this.states.get(id)!, abort.signal)));
    this.loops = this.order.map((id) => this.loop(this.states.get(id)!, abort.signal));
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    this.unsubscribe?.();
    await Promise.all(this.loops);
    this.loops = [];
    this.abort = undefined;
  }

  /** Called on every change of a node's schedulability or capacity. Returns an unsubscribe function. */
  onChange(listener: (nodeId: string, change: NodeChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Every node, sorted by id, with zero allocation. The array is cached until the next change. */
  nodes(): readonly Node[] {
    this.cache ??= this.order.map((id) => this.toNode(this.states.get(id)!));
    return this.cache;
  }

  has(nodeId: string): boolean {
    return this.states.has(nodeId);
  }

  /** @throws NotFoundError NODE_NOT_FOUND */
  node(nodeId: string): Node {
    return this.toNode(this.require(nodeId));
  }

  /** @throws NotFoundError NODE_NOT_FOUND */
  condition(nodeId: string): NodeReadyCondition {
    return { ...this.require(nodeId).condition };
  }

  /** What the node's runtime last reported (undefined before the first answer). */
  info(nodeId: string): NodeInfo | undefined {
    return this.require(nodeId).info;
  }

  /** Marks the node unschedulable; agents on it keep running. Idempotent. */
  async cordon(nodeId: string, by: string): Promise<Node> {
    const s = this.require(nodeId);
    if (!s.cordoned) {
      s.cordoned = true;
      await this.persist(s);
      this.changed(s, 'cordon');
      await this.nodeEvent(s, 'Normal', NODE_EVENT_REASONS.nodeCordoned, `node ${nodeId} cordoned by ${by}`);
    }
    return this.toNode(s);
  }

  /** Schedulable again; also clears the unhealthy mark (the operator vouches for the node). */
  async uncordon(nodeId: string, by: string): Promise<Node> {
    const s = this.require(nodeId);
    if (s.cordoned || s.unhealthy) {
      const wasUnhealthy = s.unhealthy;
      s.cordoned = false;
      s.unhealthy = false;
      s.unhealthySince = undefined;
      this.health.reset(nodeId);
      await this.persist(s);
      this.changed(s, 'uncordon');
      await this.nodeEvent(s, 'Normal', NODE_EVENT_REASONS.nodeUncordoned, `node ${nodeId} uncordoned by ${by}${wasUnhealthy ? '; unhealthy mark cleared' : ''}`);
    }
    return this.toNode(s);
  }

  /** Cordon, then move the node's restartable agents elsewhere (see NodeEvictor.drain). */
  async drain(nodeId: string, by: string, signal?: AbortSignal): Promise<DrainResult> {
    const s = this.require(nodeId);
    await this.cordon(nodeId, by);
    const result = await this.o.evictor.drain(nodeId, signal);
    await this.nodeEvent(s, 'Normal', NODE_EVENT_REASONS.nodeDrained, `node ${nodeId} drained by ${by}: ${result.rescheduled} agent(s) moved, ${result.remaining} left to finish, ${result.errors} error(s)`, result);
    return result;
  }

  /** Runs one heartbeat of every node now (tests; the timer does it otherwise). */
  async heartbeatAll(): Promise<void> {
    const signal = this.abort?.signal ?? new AbortController().signal;
    await Promise.all(this.order.map((id) => this.beat(this.states.get(id)!, signal)));
  }

  private async loop(s: NodeState, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.sleep(this.heartbeatIntervalMs);
      if (signal.aborted) return;
      await this.beat(s, signal);
    }
  }

  /** Resolves after `ms`, or at once when the service stops. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      this.sleepers.add(wake);
    });
  }

  /** One heartbeat: ping (and info on the way to Ready), then evaluate the conditions. Never throws. */
  private async beat(s: NodeState, signal: AbortSignal): Promise<void> {
    const id = s.def.id;
    // A timer cleared when the beat ends, not AbortSignal.timeout: that one fires (and
    // builds a DOMException) after every beat, 2,500 times a second at 5,000 nodes.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new DOMException(`node ${id} did not answer within ${this.pingTimeoutMs} ms`, 'TimeoutError')), this.pingTimeoutMs);
    timer.unref();
    let sig: AbortSignal;
    let unlink = (): void => undefined;
    if (signal === this.abort?.signal) {
      // The service's own signal: the stop listener in start() aborts the beats in flight.
      this.beatsInFlight.add(timeout);
      if (signal.aborted) timeout.abort(signal.reason);
      sig = timeout.signal;
    } else {
      const link = linkSignals(signal, timeout.signal);
      sig = link.signal;
      unlink = link.dispose;
    }
    try {
      await s.def.runtime.ping(sig);
      if (!s.ready || s.info === undefined) {
        const before = s.info;
        s.info = await s.def.runtime.info(sig);
        if (s.def.discoverGpus && !s.gpusDiscovered && s.def.gpus === undefined) {
          s.gpus = await this.discover(sig);
          s.gpusDiscovered = true;
        }
        // GPUs the runtime reports itself (a cluster's nvidia.com/gpu) when none are configured.
        const gpusBefore = s.gpus;
        if (s.def.gpus === undefined && s.info.gpus !== undefined) s.gpus = s.info.gpus;
        const gpusMoved = gpusBefore.length !== s.gpus.length || gpusBefore.some((g, i) => g.id !== s.gpus[i]!.id);
        if (before !== undefined && (before.cpuMillicores !== s.info.cpuMillicores || before.memoryMiB !== s.info.memoryMiB || gpusMoved)) this.changed(s, 'capacity');
      }
      s.condition.lastHeartbeatTime = this.o.clock.now();
      s.lastError = undefined;
      if (!s.ready) await this.setReady(s, true, 'NodeReady', `node ${id} answers (${s.def.driver})`);
    } catch (err) {
      if (signal.aborted) return;
      s.lastError = err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
      this.beatsInFlight.delete(timeout);
      unlink();
    }
    try {
      await this.evaluate(s, signal);
    } catch (err) {
      if (!signal.aborted) this.o.logger.warn({ err, node: id }, 'node condition update failed; retrying on the next heartbeat');
    }
  }

  private async evaluate(s: NodeState, signal: AbortSignal): Promise<void> {
    const now = this.o.clock.now();
    const since = s.condition.lastHeartbeatTime ?? this.startedAt;
    if (s.condition.status !== 'False' && !s.ready && now - since >= this.graceMs) {
      await this.setReady(s, false, 'NodeStatusUnknown', `no heartbeat from node ${s.def.id} since this control plane started${s.lastError ? `: ${s.lastError}` : ''}`);
    } else if (s.ready && now - since >= this.graceMs) {
      await this.setReady(s, false, 'HeartbeatTimeout', `node ${s.def.id} did not answer for ${Math.round((now - since) / 1000)}s${s.lastError ? `: ${s.lastError}` : ''}`);
    }
    if (s.evictionPending && !s.ready) {
      const result: NodeLostResult = await this.o.evictor.nodeLost(s.def.id, signal);
      s.evictionPending = false;
      if (result.rescheduled + result.failed + result.stopped > 0) {
        this.o.logger.warn({ node: s.def.id, ...result }, 'moved agents off a NotReady node');
      }
    }
    if (s.unhealthy && s.unhealthySince !== undefined && now - s.unhealthySince >= this.unhealthyCooldownMs) {
      s.unhealthy = false;
      s.unhealthySince = undefined;
      this.health.reset(s.def.id);
      await this.persist(s);
      this.changed(s, 'healthy');
      await this.nodeEvent(s, 'Normal', NODE_EVENT_REASONS.nodeHealthy, `node ${s.def.id} unhealthy mark cleared after ${Math.round(this.unhealthyCooldownMs / 1000)}s cool-down`);
    }
  }

  private async setReady(s: NodeState, ready: boolean, reason: string, message: string): Promise<void> {
    const now = this.o.clock.now();
    s.ready = ready;
    s.condition = { type: 'Ready', status: ready ? 'True' : 'False', reason, message, lastHeartbeatTime: s.condition.lastHeartbeatTime, lastTransitionTime: now };
    s.evictionPending = !ready;
    this.changed(s, ready ? 'ready' : 'notReady');
    if (ready) this.o.logger.info({ node: s.def.id }, 'node ready');
    else this.o.logger.warn({ node: s.def.id, reason }, 'node not ready');
    await this.nodeEvent(s, ready ? 'Normal' : 'Warning', ready ? NODE_EVENT_REASONS.nodeReady : NODE_EVENT_REASONS.nodeNotReady, message);
  }

  /** Counts node-fault failures of agents (reason on the event, node from the record). */
  private onEvent(e: PlatformEvent): void {
    if (e.objectKind !== 'Agent' || !NODE_FAULT_REASONS.has(e.reason)) return;
    void this.recordFailure(e.objectId).catch((err: unknown) => this.o.logger.warn({ err, agentId: e.objectId }, 'could not count agent failure against its node'));
  }

  private async recordFailure(agentId: string): Promise<void> {
    const agent = await this.o.store.getAgent(agentId);
    const nodeId = agent?.status.node;
    const s = nodeId === undefined ? undefined : this.states.get(nodeId);
    if (!s || s.unhealthy) return;
    const now = this.o.clock.now();
    if (!this.health.recordFailure(s.def.id, now)) return;
    s.unhealthy = true;
    s.unhealthySince = now;
    this.health.reset(s.def.id);
    await this.persist(s);
    this.changed(s, 'unhealthy');
    await this.nodeEvent(
      s,
      'Warning',
      NODE_EVENT_REASONS.nodeUnhealthy,
      `${this.health.failureThreshold} agents failed to start on node ${s.def.id} within ${Math.round(this.health.windowMs / 1000)}s; no new agents for ${Math.round(this.unhealthyCooldownMs / 1000)}s or until uncordon`,
    );
  }

  private persist(s: NodeState): Promise<void> {
    return this.o.store.putNodeState({
      id: s.def.id,
      cordoned: s.cordoned,
      unhealthy: s.unhealthy,
      labels: s.labels,
      taints: s.taints,
      updatedAt: s.unhealthy && s.unhealthySince !== undefined ? s.unhealthySince : this.o.clock.now(),
    });
  }

  private changed(s: NodeState, change: NodeChange): void {
    this.cache = undefined;
    for (const listener of this.listeners) {
      try {
        listener(s.def.id, change);
      } catch (err) {
        this.o.logger.warn({ err, node: s.def.id }, 'node change listener failed');
      }
    }
  }

  private async nodeEvent(s: NodeState, type: 'Normal' | 'Warning', reason: string, message: string, data?: unknown): Promise<void> {
    await this.o.events.record({ tenantId: NODE_EVENT_TENANT, objectKind: 'Node', objectId: s.def.id, type, reason, message, data });
  }

  private toNode(s: NodeState): Node {
    const d = s.def;
    return {
      id: d.id,
      driver: d.driver,
      simulated: d.simulated,
      labels: s.labels ?? d.labels,
      taints: s.taints ?? d.taints,
      capacity: {
        cpuMillicores: d.capacityOverride?.cpuMillicores ?? s.info?.cpuMillicores ?? 0,
        memoryMiB: d.capacityOverride?.memoryMiB ?? s.info?.memoryMiB ?? 0,
        maxAgents: d.maxAgents,
        gpus: s.gpus,
      },
      reserved: d.reserved,
      allocated: { cpuMillicores: 0, memoryMiB: 0, agents: 0, gpuIds: [] },
      ready: s.ready,
      cordoned: s.cordoned,
      unhealthy: s.unhealthy,
      lastHeartbeatAt: s.condition.lastHeartbeatTime,
    };
  }

  private require(nodeId: string): NodeState {
    const s = this.states.get(nodeId);
    if (!s) throw new NotFoundError('NODE_NOT_FOUND', `node "${nodeId}" does not exist`, { nodeId });
    return s;
  }
}
