import { scanPages } from '../store/scan-pages.js';
import type { Agent, AgentStatus } from '../domain/agent.js';
import { isTerminal } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { DomainError, VersionConflictError } from '../domain/errors.js';
import type { Logger } from '../domain/logger.js';
import type { Bus } from '../bus/bus.js';
import type { AgentHead, Store } from '../store/store.js';
import { FencedOutError } from '../store/fenced-out-error.js';
import { ImageNotFoundError, containerName, type ContainerSpec, type ObservedContainer, type Runtime } from '../runtime/runtime.js';
import type { RuntimeRegistry } from '../runtime/runtime-registry.js';
import { QUOTA_EXCEEDED_REASON } from '../tenancy/quota.js';
import { decide, type Decision, type DecisionConfig, type DecisionEvent } from './agent-decision.js';
import type { Placer } from './placer.js';
import type { EventRecorder } from './event-recorder.js';
import { phaseChangedEvent, withPhaseChange } from './phase-change-events.js';
import type { ControllerMetrics } from '../metrics/controller-metrics.js';
import { SandboxSetupError, type ContainerHooks } from '../security/agent-sandbox.js';

export interface ContainerDefaults {
  pidsLimit: number;
  tmpSizeMiB: number;
  dataSizeMiB: number;
}

export interface AgentControllerDeps {
  store: Store;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  runtimes: RuntimeRegistry;
  placer: Placer;
  events: EventRecorder;
  decision: DecisionConfig;
  containers: ContainerDefaults;
  /** Concurrent reconciles. */
  concurrency: number;
  resyncIntervalMs: number;
  /** Reconcile and scheduling durations; optional. */
  metrics?: ControllerMetrics | undefined;
  /** Isolation class, network, egress registration and secrets of containers (src/security); optional. */
  sandbox?: ContainerHooks | undefined;
}

/**
 * The leader term a run of the controller belongs to: its writes carry the token, and a
 * write the store refuses (a newer leader recorded a larger token) ends the term.
 */
export interface LeaderFence {
  fencingToken: number;
  /** Ends the term (LeaderElector's stepDown): the run's signal aborts. */
  stepDown(reason: string): void;
}

/** Retry delay after an unexpected error in a reconcile: 100 ms doubling to 30 s. */
const errorBackoffMs = (failures: number): number => Math.min(30_000, 100 * 2 ** Math.min(failures, 10));

/**
 * Executes decisions from agent-decision.ts against the store and the runtimes.
 * Keys come from the Bus: API writes, runtime events and a periodic resync, so a
 * missed event only delays convergence by one resync interval.
 */
export class AgentController {
  private readonly failures = new Map<string, number>();
  /** Reconciles under way, so stop() can wait for them. */
  private readonly inFlight = new Set<Promise<void>>();
  private abort = new AbortController();

  constructor(private readonly d: AgentControllerDeps) {}

  /**
   * Consumes the bus, watches the runtimes and resyncs until stop() or until `signal`
   * aborts (leadership lost: every reconcile in flight sees its signal abort). May be
   * called again after a stop (leadership regained). With `fence` (several replicas), the
   * run's store writes are fenced with the term's token (Store.updateAgentWithEvents).
   */
  start(signal?: AbortSignal, fence?: LeaderFence): void {
    this.abort.abort();
    this.abort = new AbortController();
    if (signal) {
      const own = this.abort;
      if (signal.aborted) own.abort();
      else signal.addEventListener('abort', () => own.abort(), { once: true });
    }
    const signalOfRun = this.abort.signal;
    if (signalOfRun.aborted) return;
    this.startRun(signalOfRun, fence);
  }

  private startRun(signal: AbortSignal, fence: LeaderFence | undefined): void {
    this.d.bus.consume((key, sig) => this.reconcileKey(key, sig, fence), this.d.concurrency, signal);
    for (const runtime of this.d.runtimes.all()) {
      // Exits and removals are what the controller must see at once. Its own creates and
      // starts it has just recorded; a start from outside is picked up by the resync.
      runtime.watch((ev) => {
        if (ev.action !== 'create' && ev.action !== 'start') this.d.bus.enqueue(ev.agentId);
      }, signal);
    }
    void this.resyncLoop(signal, fence);
  }

  /**
   * Stops consuming and waits (up to `waitMs`) for reconciles in flight, which see their
   * signal abort; so a close() after it does not pull the store from under them.
   */
  async stop(waitMs = 5_000): Promise<void> {
    this.abort.abort();
    if (this.inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  /**
   * One full level-triggered pass, as a diff rather than a reconcile of everything: list
   * each node's containers (one call per node), scan every agent record once, and queue
   * only agents whose recorded state may disagree with what runs — transitional phases,
   * a Running agent whose container is not running, a finished agent whose container
   * runs. Orphan containers are removed. At 100,000 agents this costs a few list calls
   * and 100 page reads instead of 100,000 reconciles per interval.
   */
  async resync(signal?: AbortSignal, full = false, fence?: LeaderFence): Promise<void> {
    // Containers first: an agent record always exists before its container, so a container
    // listed here whose agent the scan below does not find is truly an orphan.
    const observed = new Map<string, Map<string, ObservedContainer>>();
    for (const runtime of this.d.runtimes.all()) {
      if (signal?.aborted) return;
      try {
        const byAgent = new Map<string, ObservedContainer>();
        for (const c of await runtime.list(signal)) byAgent.set(c.agentId, c);
        observed.set(runtime.nodeId, byAgent);
      } catch (err) {
        // Unreachable node: its agents are the node controller's business (NodeLost).
        this.d.logger.debug({ err, node: runtime.nodeId }, 'resync: node did not list its containers');
      }
    }
    const nodeOf = new Map<string, string | undefined>();
    // Heads only (no JSON to parse): at 100,000 agents the pass is a cheap index walk.
    for await (const heads of scanPages((afterId) => this.d.store.scanAgentHeads({ limit: 1000, afterId }))) {
      for (const a of heads) {
        nodeOf.set(a.id, a.node);
        if ((full && !isTerminal(a.phase)) || this.needsReconcile(a, observed)) this.d.bus.enqueue(a.id);
      }
      if (signal?.aborted) break;
    }
    if (signal?.aborted) return;
    for (const runtime of this.d.runtimes.all()) {
      const containers = observed.get(runtime.nodeId);
      if (!containers) continue;
      await this.sweepOrphans(runtime, containers, nodeOf, signal, fence).catch((err: unknown) => {
        if (!this.steppedDown(err, fence)) this.d.logger.warn({ err, node: runtime.nodeId }, 'orphan sweep failed');
      });
    }
  }

  /**
   * Whether the recorded state of `a` may disagree with what its node runs. A Running
   * agent's deadline (timeoutSeconds) is not checked here: the reconcile that recorded
   * Running queued it for its deadline, and the full pass after a start re-arms it.
   */
  private needsReconcile(a: AgentHead, observed: Map<string, Map<string, ObservedContainer>>): boolean {
    if (a.desired === 'deleted' || (a.desired === 'stopped' && a.phase !== 'Stopped')) return true;
    if (a.phase === 'Pending' || a.phase === 'Starting' || a.phase === 'Stopping' || a.phase === 'Deleting') return true;
    const containers = a.node ? observed.get(a.node) : undefined;
    if (!containers) return false; // not placed, or node unreachable
    const c = containers.get(a.id);
    const running = c !== undefined && (c.state === 'running' || c.state === 'restarting');
    if (a.phase === 'Running') return !running;
    return running; // finished, but its container runs behind our back
  }

  /**
   * Removes containers whose agent no longer exists or belongs to another node. The scan
   * is only a hint: each candidate is read again before anything is removed.
   */
  private async sweepOrphans(runtime: Runtime, containers: Map<string, ObservedContainer>, nodeOf: Map<string, string | undefined>, signal?: AbortSignal, fence?: LeaderFence): Promise<void> {
    for (const c of containers.values()) {
      if (signal?.aborted) return;
      if (nodeOf.has(c.agentId) && (nodeOf.get(c.agentId) === undefined || nodeOf.get(c.agentId) === runtime.nodeId)) continue;
      const agent = await this.d.store.getAgent(c.agentId);
      if (!agent || (agent.status.node !== undefined && agent.status.node !== runtime.nodeId)) {
        // A deposed leader's view of what is an orphan may be stale: look once more.
        if (fence) await this.d.store.assertFencingToken(fence.fencingToken);
        this.d.logger.info({ agentId: c.agentId, containerId: c.containerId, node: runtime.nodeId }, 'removing orphan container');
        await runtime.remove(c.containerId, signal);
      }
    }
  }

  private async resyncLoop(signal: AbortSignal, fence: LeaderFence | undefined): Promise<void> {
    // The first pass after a start reconciles every live agent once, as an informer's
    // initial list does: state kept outside the store (proxy registrations, relays, the
    // placer's books) is rebuilt by those reconciles. Later passes are diffs.
    let full = true;
    while (!signal.aborted) {
      try {
        await this.resync(signal, full, fence);
        full = false;
      } catch (err) {
        if (!this.steppedDown(err, fence)) this.d.logger.warn({ err }, 'resync failed');
      }
      await sleep(this.d.resyncIntervalMs, signal);
    }
  }


  private reconcileKey(agentId: string, signal: AbortSignal, fence: LeaderFence | undefined): Promise<void> {
    const run = this.reconcileKeyOnce(agentId, signal, fence);
    this.inFlight.add(run);
    run.finally(() => this.inFlight.delete(run)).catch(() => undefined);
    return run;
  }

  private async reconcileKeyOnce(agentId: string, signal: AbortSignal, fence: LeaderFence | undefined): Promise<void> {
    const startedMs = performance.now();
    try {
      const requeueAfterMs = await this.reconcile(agentId, signal, fence);
      this.d.metrics?.observeReconcile('success', (performance.now() - startedMs) / 1000);
      this.failures.delete(agentId);
      if (requeueAfterMs !== undefined) this.d.bus.enqueue(agentId, requeueAfterMs);
    } catch (err) {
      // Fenced out: another replica leads. Stepping down aborts `signal`; the key goes
      // back to the queue for whoever leads now.
      this.steppedDown(err, fence);
      if (signal.aborted) {
        // Stopped (leadership lost) mid-reconcile: not a failure; whoever runs next looks again.
        this.d.bus.enqueue(agentId);
        return;
      }
      this.d.metrics?.observeReconcile(err instanceof VersionConflictError ? 'conflict' : 'error', (performance.now() - startedMs) / 1000);
      if (err instanceof VersionConflictError) {
        this.d.bus.enqueue(agentId);
        return;
      }
      const n = (this.failures.get(agentId) ?? 0) + 1;
      this.failures.set(agentId, n);
      this.d.logger.warn({ err, agentId, failures: n }, 'reconcile failed; will retry');
      this.d.bus.enqueue(agentId, errorBackoffMs(n));
    }
  }

  /**
   * True (after stepping down) when `err` says this run's term was fenced out. The
   * term's signal aborts, so everything the run started stops with it.
   */
  private steppedDown(err: unknown, fence: LeaderFence | undefined): boolean {
    if (!(err instanceof FencedOutError) || !fence) return false;
    fence.stepDown(`fencing token ${fence.fencingToken} refused, a newer leader recorded ${err.recordedToken}`);
    return true;
  }

  /** Reconciles one agent; returns when to look again (undefined: only on events). */
  async reconcile(agentId: string, signal?: AbortSignal, fence?: LeaderFence): Promise<number | undefined> {
    const agent = await this.d.store.getAgent(agentId);
    if (!agent) {
      // Gone (deleted, perhaps by a pass that failed half-way): make sure nothing of it is
      // still held here. Both calls are idempotent.
      this.d.placer.release(agentId);
      await this.d.sandbox?.forget(agentId);
      return undefined;
    }
    // Waiting for quota (tenant admission "queue"): the admission queue admits it (reason
    // changes to Admitted) and queues it again; until then there is nothing to do.
    if (agent.status.phase === 'Pending' && agent.status.reason === QUOTA_EXCEEDED_REASON && agent.desired === 'running') return undefined;
    // An agent bound to a node is counted there even when no place() of this process bound
    // it (restart, or started again on its old node); no-op when counted already.
    if (agent.status.node !== undefined && !isTerminal(agent.status.phase) && agent.desired !== 'deleted') this.d.placer.adopt?.(agent);
    const log = this.d.logger.child({ agentId, node: agent.status.node });
    const runtime = agent.status.node ? this.d.runtimes.get(agent.status.node) : undefined;
    let observed: ObservedContainer | undefined | 'unreachable';
    if (!agent.status.node) observed = undefined;
    else if (!runtime) observed = 'unreachable';
    else {
      try {
        // By the deterministic name, never by a recorded id: the id goes stale when the
        // container is replaced (pruned, recreated after a start timeout), and a stale id
        // would read as "absent" while the real container runs on.
        observed = await runtime.inspect(containerName(agent.id), signal);
      } catch (err) {
        // Shutdown or lost leadership: not a runtime problem, and no decision to make.
        if (signal?.aborted) return undefined;
        log.warn({ err }, 'runtime did not answer inspect');
        observed = 'unreachable';
      }
    }
    const now = this.d.clock.now();
    const sandboxStatus = await this.d.sandbox?.observe(agent, observed, signal);
    const seen = sandboxStatus ? await this.writeStatus(agent, { ...agent.status, ...sandboxStatus }, [], fence) : agent;
    const decision = decide(seen, observed, now, this.d.decision);
    return this.execute(seen, decision, runtime, log, signal, fence);
  }

  /**
   * `fencedJustNow`: the caller's fenced write of this agent has just committed, so the
   * token was current a moment ago and the first runtime action needs no check of its own.
   */
  private async execute(agent: Agent, decision: Decision, runtime: Runtime | undefined, log: Logger, signal?: AbortSignal, fence?: LeaderFence, fencedJustNow = false): Promise<number | undefined> {
    let current = agent;
    // Status first, then act: if we crash in between, the next pass sees the recorded
    // intent and the real container and does the rest.
    if (decision.status) current = await this.writeStatus(current, decision.status, decision.events, fence);
    else await this.emit(current, decision.events);
    // Runtime actions are not fenced by the runtime (Docker knows no tokens): a leader
    // checks its token before the first one, unless a fenced write just did.
    let tokenChecked = fencedJustNow || decision.status !== undefined;
    const checkToken = async (): Promise<void> => {
      if (!fence || tokenChecked) return;
      await this.d.store.assertFencingToken(fence.fencingToken);
      tokenChecked = true;
    };
    // Unbound from its node (given up on an unreachable node): its room there goes back.
    if (agent.status.node !== undefined && current.status.node === undefined) this.d.placer.release(current.id);

    for (const action of decision.actions) {
      // A deposed leader stops before its next step rather than after it.
      signal?.throwIfAborted();
      switch (action.type) {
        case 'schedule':
          return this.schedule(current, signal, fence);
        case 'createAndStart':
        case 'start': {
          if (!runtime) return 1_000;
          let creating = false;
          try {
            let containerId = current.status.containerId;
            let created: ContainerSpec | undefined;
            await checkToken();
            if (action.type === 'createAndStart' || !containerId) {
              const spec = this.containerSpec(current);
              created = this.d.sandbox ? await this.d.sandbox.prepare(current, spec, signal) : spec;
              creating = true;
              containerId = await runtime.create(created, signal);
              creating = false;
            }
            await runtime.start(containerId, signal);
            const sandboxStatus = (await this.d.sandbox?.started(current, containerId, signal, created)) ?? {};
            const now = this.d.clock.now();
            current = await this.writeStatus(
              current,
              { ...current.status, phase: 'Running', reason: 'Started', message: `running on node ${current.status.node}`, containerId, startedAt: now, phaseSince: now, finishedAt: undefined, nextAttemptAt: undefined, ...sandboxStatus },
              [{ type: 'Normal', reason: 'Started', message: `container ${containerId.slice(0, 12)} started on node ${current.status.node}` }],
              fence,
            );
            log.info({ containerId }, 'agent running');
            return current.spec.timeoutSeconds !== undefined ? current.spec.timeoutSeconds * 1000 : undefined;
          } catch (err) {
            // The runtime refused to create the container from this spec (Docker answers 400:
            // bad reference, unknown OCI runtime, ...): retrying cannot help, so fail now with its message rather
            // than as a StartTimeout two minutes later.
            const refused = creating && err instanceof DomainError && err.code === 'RUNTIME_ERROR' && (err.details as { statusCode?: number } | undefined)?.statusCode === 400;
            if (err instanceof ImageNotFoundError || err instanceof SandboxSetupError || refused) {
              const now = this.d.clock.now();
              const reason = err instanceof SandboxSetupError ? err.reason : refused ? 'CreateError' : 'ImageNotFound';
              await this.writeStatus(
                current,
                { ...current.status, phase: 'Failed', reason, message: err.message, finishedAt: now, phaseSince: now },
                [{ type: 'Warning', reason, message: err.message }],
                fence,
              );
              this.d.placer.release(current.id);
              return undefined;
            }
            throw err;
          }
        }
        case 'stop':
          if (runtime) {
            await checkToken();
            await runtime.stop(containerName(current.id), action.graceMs, signal);
          }
          break;
        case 'remove':
          if (runtime) {
            await checkToken();
            await runtime.remove(containerName(current.id), signal);
          }
          break;
        case 'deleteRecord':
          await this.d.store.deleteAgent(current.id, fence?.fencingToken);
          // Release first: both are idempotent, and a failing forget must not leak node room.
          this.d.placer.release(current.id);
          await this.d.sandbox?.forget(current.id);
          await this.d.events.record({ tenantId: current.tenantId, objectKind: 'Agent', objectId: current.id, type: 'Normal', reason: 'Deleted', message: `agent ${current.name} deleted` });
          log.info({}, 'agent deleted');
          return undefined;
      }
    }
    if (isTerminal(current.status.phase)) this.d.placer.release(current.id);
    return decision.requeueAfterMs;
  }

  private async schedule(agent: Agent, signal?: AbortSignal, fence?: LeaderFence): Promise<number | undefined> {
    const placeStartedMs = performance.now();
    const placement = await this.d.placer.place(agent, signal);
    this.d.metrics?.observeScheduling(placement.ok ? 'scheduled' : 'unschedulable', (performance.now() - placeStartedMs) / 1000);
    const now = this.d.clock.now();
    if (!placement.ok) {
      if (agent.status.reason !== placement.reason || agent.status.message !== placement.message) {
        await this.writeStatus(
          agent,
          { ...agent.status, reason: placement.reason, message: placement.message },
          [{ type: 'Warning', reason: 'FailedScheduling', message: placement.message, data: placement.data }],
          fence,
        );
      }
      // Capacity changes also requeue waiting agents; this is only the fallback.
      return 5_000;
    }
    // Placed: record the node and the create intent (Starting) in one write, then create
    // at once. A fresh placement needs no inspect first: create is idempotent by the
    // deterministic name, so a leftover container is adopted rather than duplicated.
    const placed: Agent = {
      ...agent,
      status: { ...agent.status, node: placement.nodeId, gpuIds: placement.gpuIds.length ? placement.gpuIds : undefined, reason: 'Scheduled', message: placement.message, phaseSince: now },
    };
    const decision = decide(placed, undefined, now, this.d.decision);
    let written: Agent;
    try {
      written = await this.writeStatus(
        agent,
        decision.status ?? placed.status,
        [{ type: 'Normal', reason: 'Scheduled', message: placement.message, data: placement.data }, ...decision.events],
        fence,
      );
    } catch (err) {
      this.d.placer.release(agent.id);
      throw err;
    }
    const runtime = this.d.runtimes.get(placement.nodeId);
    if (!runtime) return 1_000;
    const log = this.d.logger.child({ agentId: agent.id, node: placement.nodeId });
    return this.execute(written, { ...decision, status: undefined, events: [] }, runtime, log, signal, fence, true);
  }

  /** The spec a create of the agent's container gets (before the sandbox completes it); also read by Kubernetes restarts (platform.ts). */
  containerSpec(agent: Agent): ContainerSpec {
    const r = agent.spec.resources;
    const gpuDeviceIds = agent.status.gpuIds ?? [];
    return {
      agentId: agent.id,
      tenantId: agent.tenantId,
      name: agent.name,
      image: agent.spec.image,
      command: agent.spec.command,
      args: agent.spec.args,
      env: { AGENT_ID: agent.id, AGENT_NAME: agent.name, ...agent.spec.env },
      workingDir: agent.spec.workingDir,
      cpuLimitMillicores: r.cpuLimitMillicores,
      cpuRequestMillicores: r.cpuMillicores,
      memoryLimitMiB: r.memoryLimitMiB,
      pidsLimit: this.d.containers.pidsLimit,
      tmpSizeMiB: this.d.containers.tmpSizeMiB,
      dataSizeMiB: this.d.containers.dataSizeMiB,
      gpuDeviceIds,
      labels: agent.labels,
      // The egress mode comes from the spec alone (never from labels, which the user writes).
      egress: agent.spec.network?.mode ?? 'none',
      // Only runtimes that place containers themselves read these (Kubernetes: kube-scheduler
      // or binding mode, and the kubelet's deadline); Docker ignores them, having been placed.
      placement: { nodeSelector: agent.spec.nodeSelector, tolerations: agent.spec.tolerations, affinity: agent.spec.affinity },
      timeoutSeconds: agent.spec.timeoutSeconds,
    };
  }

  private async writeStatus(agent: Agent, status: AgentStatus, events: DecisionEvent[], fence: LeaderFence | undefined): Promise<Agent> {
    // The events are stored in the update's transaction: one commit to wait for, not one per event.
    const { agent: updated, events: stored } = await this.d.store.updateAgentWithEvents(
      agent,
      { status, updatedAt: this.d.clock.now() },
      // A phase change is named (data.from/to) by the events written with it: no transition without a stored event.
      withPhaseChange(agent.status, status, events).map((e) => this.d.events.stamp({ tenantId: agent.tenantId, objectKind: 'Agent', objectId: agent.id, type: e.type, reason: e.reason, message: e.message, data: e.data })),
      fence?.fencingToken,
    );
    this.d.events.published(stored);
    if (status.phase !== agent.status.phase) this.d.bus.publish(phaseChangedEvent(agent, agent.status.phase, status.phase, this.d.clock.now()));
    return updated;
  }

  private async emit(agent: Agent, events: DecisionEvent[]): Promise<void> {
    for (const e of events) {
      await this.d.events.record({ tenantId: agent.tenantId, objectKind: 'Agent', objectId: agent.id, type: e.type, reason: e.reason, message: e.message, data: e.data });
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    t.unref();
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
