import { scanPages } from '../store/scan-pages.js';
import { isTerminal, type Agent, type Phase } from '../domain/agent.js';
import { systemClock, type Clock } from '../domain/clock.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Runtime } from '../runtime/runtime.js';
import type { RuntimeRegistry } from '../runtime/runtime-registry.js';
import type { Store } from '../store/store.js';
import type { ContainerUsage } from './cgroup/container-usage.js';
import { StringInterner } from '../domain/string-interner.js';

/** Samples containers of one node; CgroupCollector is the real one. */
export interface UsageCollector {
  /** One sample per container that could be sampled; missing containers are left out. */
  collect(containerIds: readonly string[], signal?: AbortSignal): Promise<Map<string, ContainerUsage>>;
}

/** One point of an agent's usage history. */
export interface UsagePoint {
  /** When the sample was taken (ms epoch). */
  timestampMs: number;
  /** CPU used since the previous sample of the same container, in cores; null for a container's first sample. */
  cpuCores: number | null;
  memoryWorkingSetBytes: number;
  memoryUsageBytes: number;
}

/** The latest usage of a running agent, as GET /api/v1/agents/{id} shows it. */
export interface AgentUsage {
  /** Average CPU in cores between the last two samples; null until there are two. */
  cpuCores: number | null;
  memoryWorkingSetBytes: number;
  /** From the container's cgroup; the spec's limit when the cgroup says unlimited. */
  memoryLimitBytes: number;
  cpuLimitCores: number;
  /** When the sample was taken (ms epoch). */
  sampledAt: number;
}

/** Measured usage summed over the agents of one node (or one tenant's agents on it), from the last round. */
export interface NodeUsage {
  /**
   * Sum of the CPU rates of the measured agents that have one, in millicores (rounded);
   * null when agents were measured but none has a rate yet (each needs two samples). An
   * agent in its first sample adds its memory but not yet its CPU.
   */
  cpuMillicores: number | null;
  /** Sum of the measured agents' working sets. */
  memoryWorkingSetBytes: number;
  /** Running agents on the node with a sample in the last round. */
  agents: number;
  /** The newest of their samples (ms epoch); the end of the last round when there are none. */
  sampledAt: number;
}

interface NodeSums {
  cpuCores: number;
  cpuRates: number;
  memoryWorkingSetBytes: number;
  measured: number;
  /** Running agents placed on the node, measured or not. */
  running: number;
  newestSampleMs: number;
}

/** What the metrics exposition needs of one live (non-terminal) agent. */
export interface AgentContainerView {
  agentId: string;
  agentName: string;
  tenantId: string;
  /** Empty until the agent is bound to a node. */
  node: string;
  phase: Phase;
  restarts: number;
  /** Requests, for node allocation. */
  cpuRequestMillicores: number;
  memoryRequestMiB: number;
  gpus: number;
  cpuLimitMillicores: number;
  memoryLimitMiB: number;
  /** The sample of the last round; absent when the container was not sampled then. */
  usage?: ContainerUsage | undefined;
}

export interface UsageSamplerOptions {
  store: Store;
  runtimes: RuntimeRegistry;
  /**
   * The collector for a node's containers, or undefined when that node's containers cannot
   * be sampled (simulated nodes): their agents still count for restarts and allocation.
   */
  collectorFor: (runtime: Runtime) => UsageCollector | undefined;
  /**
   * Time between sampling rounds. Shorter gives finer CPU rates and fresher /metrics at the
   * cost of one store listing and one cgroup read per running agent per round.
   * @default 10_000
   */
  intervalMs?: number;
  /**
   * How long history points are kept in memory. Memory is about 40 bytes per point:
   * 1 h at 10 s is 360 points, about 14 kB per agent.
   * @default 3_600_000
   */
  retentionMs?: number;
  /** @default systemClock */
  clock?: Clock;
  /** @default silentLogger */
  logger?: Logger;
}

/**
 * The last reading of a container whose run has ended (the agent left Running, or runs in
 * another container now). The cgroup is gone by the time anyone asks, so this reading is the
 * best figure of the run's CPU there will ever be.
 */
export interface EndedRun {
  agentId: string;
  tenantId: string;
  containerId: string;
  /** When the agent entered Running for this run (its status.phaseSince then). */
  runningSinceMs: number;
  /** The container's cumulative CPU counter at its last sample, and when that sample was taken. */
  cpuUsageSeconds: number;
  sampledAtMs: number;
  /** The run ended before this: the next run's start, or the round that saw it end. */
  endedBeforeMs: number;
}

interface Tracked {
  view: AgentContainerView;
  /** The agent record version the view was built from: an unchanged agent is not read again. */
  version: number;
  containerId: string | undefined;
  /** phaseSince of the current run (set while containerId is). */
  runningSinceMs: number | undefined;
  /** The last sample of containerId. */
  previous: ContainerUsage | undefined;
  /** Created with the first sample: most tracked agents of a large simulated pool never get one. */
  history: UsagePoint[] | undefined;
  /** Listed among the live agents in the last round. */
  live: boolean;
  /** The round that last listed it. */
  seenInRound: number;
}

const LIVE_PHASES: Phase[] = ['Pending', 'Starting', 'Running', 'Stopping', 'Deleting'];
const PAGE_SIZE = 1000;
/** Nanosecond counters make float noise; 6 decimals is far finer than any CPU limit. */
const round6 = (x: number): number => Math.round(x * 1e6) / 1e6;

/**
 * Periodically samples the containers of running agents through per-node collectors and
 * keeps a short in-memory history per agent. Everything /metrics and the usage API show
 * comes from here, so a scrape never touches Docker: it reads what the last round cached.
 * Histories live in this process only; after a restart they start empty.
 */
export class UsageSampler {
  readonly intervalMs: number;
  readonly retentionMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly tracked = new Map<string, Tracked>();
  private liveViews: readonly AgentContainerView[] = [];
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private rounds = 0;
  /** Rounds begun, failed ones included: marks which tracked agents a listing saw. */
  private listings = 0;
  /** When the last round completed (ms epoch). */
  private lastRoundAtMs = 0;
  /** Per-node sums of the round whose views they were built from, made on first ask. */
  private nodeIndex: { views: readonly AgentContainerView[]; byNode: Map<string, { all: NodeSums; byTenant: Map<string, NodeSums> }> } | undefined;
  private runEnded: ((run: EndedRun) => void) | undefined;
  /** Tenant and node ids, one string per value shared by every view (see track()). */
  private readonly strings = new StringInterner();

  constructor(private readonly o: UsageSamplerOptions) {
    this.intervalMs = o.intervalMs ?? 10_000;
    this.retentionMs = o.retentionMs ?? 3_600_000;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? silentLogger;
  }

  /** Starts the sampling loop (first round at once). */
  start(): void {
    if (this.abort) return;
    const abort = new AbortController();
    this.abort = abort;
    this.loop = this.run(abort.signal);
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    await this.loop;
    this.abort = undefined;
    this.loop = undefined;
  }

  /**
   * Hands `listener` the last reading of every run that ends from now on (one listener: the
   * usage meter, which bills the closing piece of a run with it on its next pass). Without
   * this hand-over the reading would go with the tracked container, usually in the very
   * round that notices the end, and a short job's CPU would never reach the ledger.
   */
  onRunEnded(listener: (run: EndedRun) => void): void {
    this.runEnded = listener;
  }

  /** Completed sampling rounds; tests wait on it. */
  get completedRounds(): number {
    return this.rounds;
  }

  /** The live agents of the last round; a new array after each round (callers may cache by identity). */
  current(): readonly AgentContainerView[] {
    return this.liveViews;
  }

  /** Latest usage of an agent sampled in the last round, else undefined. */
  latest(agentId: string): AgentUsage | undefined {
    const t = this.tracked.get(agentId);
    const u = t?.live ? t.view.usage : undefined;
    if (!t || !u) return undefined;
    const last = t.history?.at(-1);
    return {
      cpuCores: last?.timestampMs === u.timestampMs ? last.cpuCores : null,
      memoryWorkingSetBytes: u.memoryWorkingSetBytes,
      memoryLimitBytes: u.memoryLimitBytes ?? t.view.memoryLimitMiB * 1024 * 1024,
      cpuLimitCores: t.view.cpuLimitMillicores / 1000,
      sampledAt: u.timestampMs,
    };
  }

  /**
   * Measured usage of a node's running agents in the last round: all of them, or only
   * `tenantId`'s. Undefined before the first round, and when running agents (in scope) are
   * on the node but none of them was measured (a node whose containers cannot be sampled,
   * a failed collection): unknown, not zero. A node without running agents (in scope) reads
   * zero. Only agents' containers count, not the node's own processes.
   */
  nodeUsage(nodeId: string, tenantId?: string): NodeUsage | undefined {
    if (this.rounds === 0) return undefined;
    const entry = this.nodeSums().get(nodeId);
    const s = tenantId === undefined ? entry?.all : entry?.byTenant.get(tenantId);
    if (s === undefined) return { cpuMillicores: 0, memoryWorkingSetBytes: 0, agents: 0, sampledAt: this.lastRoundAtMs };
    if (s.measured === 0 && s.running > 0) return undefined;
    return {
      cpuMillicores: s.measured > 0 && s.cpuRates === 0 ? null : Math.round(s.cpuCores * 1000),
      memoryWorkingSetBytes: s.memoryWorkingSetBytes,
      agents: s.measured,
      sampledAt: s.measured > 0 ? s.newestSampleMs : this.lastRoundAtMs,
    };
  }

  /** One pass over the round's views, shared by every nodeUsage() call until the next round. */
  private nodeSums(): Map<string, { all: NodeSums; byTenant: Map<string, NodeSums> }> {
    if (this.nodeIndex?.views === this.liveViews) return this.nodeIndex.byNode;
    const byNode = new Map<string, { all: NodeSums; byTenant: Map<string, NodeSums> }>();
    const empty = (): NodeSums => ({ cpuCores: 0, cpuRates: 0, memoryWorkingSetBytes: 0, measured: 0, running: 0, newestSampleMs: 0 });
    for (const view of this.liveViews) {
      if (view.phase !== 'Running' || !view.node) continue;
      let entry = byNode.get(view.node);
      if (!entry) byNode.set(view.node, (entry = { all: empty(), byTenant: new Map() }));
      let own = entry.byTenant.get(view.tenantId);
      if (!own) entry.byTenant.set(view.tenantId, (own = empty()));
      // From the round's own view, not latest(): a round in progress has already replaced
      // the tracked views and appended history, and would read as "not measured".
      const usage = view.usage;
      const cpuCores = usage ? this.cpuRateAt(view.agentId, usage.timestampMs) : null;
      for (const s of [entry.all, own]) {
        s.running++;
        if (!usage) continue;
        s.measured++;
        s.memoryWorkingSetBytes += usage.memoryWorkingSetBytes;
        s.newestSampleMs = Math.max(s.newestSampleMs, usage.timestampMs);
        if (cpuCores !== null) {
          s.cpuCores += cpuCores;
          s.cpuRates++;
        }
      }
    }
    this.nodeIndex = { views: this.liveViews, byNode };
    return byNode;
  }

  /** The CPU rate of the history point taken at `timestampMs`: the last one, or the one before while a round is adding. */
  private cpuRateAt(agentId: string, timestampMs: number): number | null {
    const points = this.tracked.get(agentId)?.history ?? [];
    for (let i = points.length - 1; i >= Math.max(0, points.length - 2); i--) if (points[i]!.timestampMs === timestampMs) return points[i]!.cpuCores;
    return null;
  }

  /** History points of an agent at or after `sinceMs`, oldest first (empty when unknown). */
  history(agentId: string, sinceMs: number): UsagePoint[] {
    const points = this.tracked.get(agentId)?.history ?? [];
    return points.filter((p) => p.timestampMs >= sinceMs);
  }

  /** One sampling round. Collector failures are logged per node; a store failure rejects. */
  async sampleOnce(signal?: AbortSignal): Promise<void> {
    // Page by page: only the compact Tracked entries outlive a page, never the whole list
    // of Agent records (at 100,000 agents that list alone was hundreds of MiB each round).
    // Heads first: only agents whose version moved since the last round are read in full.
    const round = ++this.listings;
    const byNode = new Map<string, Tracked[]>();
    const place = (t: Tracked): void => {
      if (t.view.phase !== 'Running' || !t.view.node || !t.containerId) return;
      const list = byNode.get(t.view.node) ?? [];
      list.push(t);
      byNode.set(t.view.node, list);
    };
    for await (const heads of scanPages((afterId) => this.o.store.scanAgentHeads({ phase: LIVE_PHASES, limit: PAGE_SIZE, afterId }), signal)) {
      const changed: string[] = [];
      for (const head of heads) {
        const t = this.tracked.get(head.id);
        if (t === undefined || t.version !== head.version) {
          changed.push(head.id);
          continue;
        }
        // A fresh view each round: the previous round's current() shares the old one.
        t.view = copyView(t.view);
        t.live = true;
        t.seenInRound = round;
        place(t);
      }
      for (const agent of await this.o.store.getAgents(changed)) {
        if (isTerminal(agent.status.phase)) continue; // finished between the two reads
        place(this.track(agent, round));
      }
    }
    for (const t of this.tracked.values()) {
      if (t.seenInRound !== round && t.live) {
        t.live = false;
        // Finished (terminal agents are not tracked again) or gone: its run is over.
        this.endRun(t, this.clock.now());
        t.containerId = undefined;
        t.previous = undefined;
        // A fresh object: the previous round's current() shares this view.
        t.view = copyView(t.view);
      }
    }

    await Promise.all(
      [...byNode].map(async ([nodeId, list]) => {
        const runtime = this.o.runtimes.get(nodeId);
        const collector = runtime ? this.o.collectorFor(runtime) : undefined;
        if (!collector) return;
        let samples: Map<string, ContainerUsage>;
        try {
          samples = await collector.collect(
            list.map((t) => t.containerId!),
            signal,
          );
        } catch (err) {
          if (signal?.aborted) throw err;
          this.logger.warn({ err, node: nodeId }, 'usage collection failed');
          return;
        }
        for (const t of list) this.record(t, samples.get(t.containerId!));
      }),
    );
    this.prune();
    // track() gives every live agent a new view each round, so the views are shared with
    // current() rather than copied (a copy per agent per round was garbage and live heap).
    const live: AgentContainerView[] = [];
    for (const t of this.tracked.values()) if (t.live) live.push(t.view);
    this.liveViews = live;
    this.lastRoundAtMs = this.clock.now();
    this.rounds++;
  }

  private track(agent: Agent, round: number): Tracked {
    const r = agent.spec.resources;
    let t = this.tracked.get(agent.id);
    // Every store read brings fresh copies of the same strings: keep the ones already held
    // (ids and names of a tracked agent; tenant and node ids shared by many agents).
    const old = t?.view;
    const view = makeView(
      old?.agentId ?? agent.id,
      old?.agentName === agent.name ? old.agentName : agent.name,
      this.strings.intern(agent.tenantId),
      this.strings.intern(agent.status.node ?? ''),
      agent.status.phase,
      agent.status.restarts,
      r.cpuMillicores,
      r.memoryMiB,
      r.gpu,
      r.cpuLimitMillicores,
      r.memoryLimitMiB,
      undefined,
    );
    if (!t) {
      t = { view, version: agent.version, containerId: undefined, runningSinceMs: undefined, previous: undefined, history: undefined, live: true, seenInRound: round };
      this.tracked.set(agent.id, t);
    }
    t.view = view; // no usage until this round samples it
    t.version = agent.version;
    t.live = true;
    t.seenInRound = round;
    const running = agent.status.phase === 'Running' ? agent.status.containerId : undefined;
    if (running !== t.containerId) {
      this.endRun(t, running !== undefined ? agent.status.phaseSince : this.clock.now());
      // Another container (recreated after a crash): its counters start again from zero.
      t.containerId = running;
      t.previous = undefined;
      t.runningSinceMs = running !== undefined ? agent.status.phaseSince : undefined;
    }
    return t;
  }

  /** Reports the run of t.containerId as ended, with its last sample (nothing without one). */
  private endRun(t: Tracked, endedBeforeMs: number): void {
    if (t.containerId === undefined || t.previous === undefined || t.runningSinceMs === undefined) return;
    this.runEnded?.({
      agentId: t.view.agentId,
      tenantId: t.view.tenantId,
      containerId: t.containerId,
      runningSinceMs: t.runningSinceMs,
      cpuUsageSeconds: t.previous.cpuUsageSeconds,
      sampledAtMs: t.previous.timestampMs,
      endedBeforeMs,
    });
  }

  private record(t: Tracked, usage: ContainerUsage | undefined): void {
    if (!usage) return;
    const prev = t.previous;
    let cpuCores: number | null = null;
    // A counter that went down means the cgroup was recreated (container restarted in
    // place): no rate across that gap.
    if (prev && usage.timestampMs > prev.timestampMs && usage.cpuUsageSeconds >= prev.cpuUsageSeconds) {
      cpuCores = round6((usage.cpuUsageSeconds - prev.cpuUsageSeconds) / ((usage.timestampMs - prev.timestampMs) / 1000));
    }
    t.previous = usage;
    t.view.usage = usage;
    (t.history ??= []).push({ timestampMs: usage.timestampMs, cpuCores, memoryWorkingSetBytes: usage.memoryWorkingSetBytes, memoryUsageBytes: usage.memoryUsageBytes });
  }

  private prune(): void {
    const oldestMs = this.clock.now() - this.retentionMs;
    for (const [id, t] of this.tracked) {
      if (t.history !== undefined) {
        const firstKept = t.history.findIndex((p) => p.timestampMs >= oldestMs);
        if (firstKept === -1) t.history = undefined;
        else if (firstKept > 0) t.history.splice(0, firstKept);
      }
      // Finished or deleted agents keep their history until it ages out.
      if (!t.live && t.history === undefined) this.tracked.delete(id);
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const startedMs = this.clock.now();
      try {
        await this.sampleOnce(signal);
      } catch (err) {
        if (signal.aborted) return;
        this.logger.warn({ err }, 'usage sampling round failed');
      }
      // Fixed rate rather than fixed delay, so rates are computed over even steps.
      await sleep(Math.max(0, this.intervalMs - (this.clock.now() - startedMs)), signal);
    }
  }
}

/**
 * Every view is built here, with all fields in one order and `usage` always present, so
 * all views share one hidden class. Built with object spread and `usage` added later, most
 * views got a hidden class of their own: about 280 bytes per agent in V8 maps and
 * descriptor arrays, more than the view itself.
 */
function makeView(
  agentId: string,
  agentName: string,
  tenantId: string,
  node: string,
  phase: Phase,
  restarts: number,
  cpuRequestMillicores: number,
  memoryRequestMiB: number,
  gpus: number,
  cpuLimitMillicores: number,
  memoryLimitMiB: number,
  usage: ContainerUsage | undefined,
): AgentContainerView {
  return { agentId, agentName, tenantId, node, phase, restarts, cpuRequestMillicores, memoryRequestMiB, gpus, cpuLimitMillicores, memoryLimitMiB, usage };
}

/** A new view of the same agent without a sample (a new round has not sampled it yet). */
function copyView(v: AgentContainerView): AgentContainerView {
  return makeView(v.agentId, v.agentName, v.tenantId, v.node, v.phase, v.restarts, v.cpuRequestMillicores, v.memoryRequestMiB, v.gpus, v.cpuLimitMillicores, v.memoryLimitMiB, undefined);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
