/**
 * SIMULATED: a fake cluster for tests and benchmarks, in the spirit of KWOK. Nothing
 * runs anywhere: "containers" are records in this process's memory whose lifetimes
 * come from their command (a small sh subset, see sim-program.ts), SIM_* env
 * variables and the cluster's options. Never point real agents at it.
 *
 * One SimulatedCluster holds every simulated node, one timer heap behind one real
 * setTimeout, and one event queue; SimulatedRuntime objects are thin per-node views
 * of it implementing the Runtime port.
 */
import { InputError, UnavailableError } from '../../domain/errors.js';
import type { RuntimeEvent } from '../runtime.js';
import { DEFAULT_NODE_SHAPE, validateNodeShape, type NodeShape } from './node-shape.js';
import { SimContainer } from './sim-container.js';
import { compileSimProgram, simEnvKey, type SimProgram } from './sim-program.js';
import { SimulatedRuntime } from './simulated-runtime.js';
import { seededUnit } from './seeded-unit.js';
import { TimerHeap, type TimerEntry } from './timer-heap.js';

/** User options; every field but `nodes` has a default. */
export interface SimulatedClusterOptions {
  /** How many nodes (all of `shape`), or one shape per node. */
  nodes: number | NodeShape[];
  /** Shape of every node when `nodes` is a number. @default 8 CPUs, 32 GiB, no GPU */
  shape?: NodeShape | undefined;
  /**
   * How long an agent whose command the simulator does not interpret runs (see
   * sim-program.ts), in ms. Infinity: until stopped, like a long-running agent.
   * @default Infinity
   */
  defaultRunMs?: number | undefined;
  /**
   * Fraction (0..1) of runs that fail: such a run exits with `failureExitCode` at a
   * point uniformly spread over its natural run time (over `failureWindowMs` when it
   * has none). Deterministic: the draw depends on (seed, agent id, run number) only.
   * @default 0
   */
  failureRate?: number | undefined;
  /** @default 1 */
  failureExitCode?: number | undefined;
  /** Where failing runs of agents that would run forever fail: within this many ms of start. @default 60_000 */
  failureWindowMs?: number | undefined;
  /** How long start() takes before the container is running. @default 0 */
  startLatencyMs?: number | undefined;
  /** @default 1 */
  seed?: number | undefined;
  /** Node ids are `${idPrefix}00001`, `${idPrefix}00002`, ... @default 'sim-' */
  idPrefix?: string | undefined;
  /**
   * Images that "do not exist": create() throws ImageNotFoundError for them.
   * @default images containing "does-not-exist" or "missing"
   */
  missingImages?: ((image: string) => boolean) | undefined;
  /** Log lines each container keeps (a ring: older lines are dropped). @default 200 */
  logLinesPerContainer?: number | undefined;
}

/** One watch() on a node's events; it ends when `signal` aborts (checked on delivery) or its view closes. */
export interface SimWatch {
  readonly onEvent: (event: RuntimeEvent) => void;
  readonly signal: AbortSignal;
}

/** One simulated node: its containers, watchers and whether it is reachable. */
export interface SimNode {
  readonly id: string;
  readonly shape: NodeShape;
  down: boolean;
  readonly containers: Map<string, SimContainer>;
  /**
   * The same containers by agent id: a container's name is containerName(agentId), so
   * lookups by name go through here (a map keyed by the name held one more string per agent).
   */
  readonly byAgent: Map<string, SimContainer>;
  readonly listeners: Set<SimWatch>;
  /**
   * Woken when the node goes down or comes back (follow readers, stop waits). Made on
   * first wait and dropped when empty: nearly all nodes never have one.
   */
  waiters: Set<() => void> | undefined;
}

const defaultMissingImages = (image: string): boolean => image.includes('does-not-exist') || image.includes('missing');
/** Programs are shared between containers with the same command; the cache is bounded for churny workloads. */
const PROGRAM_CACHE_LIMIT = 10_000;
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** Counts for benchmarks and assertions. */
export interface SimulatedClusterStats {
  nodes: number;
  nodesDown: number;
  containers: number;
  running: number;
  /** Live entries in the timer heap (planned exits, waits). */
  pendingTimers: number;
}

/**
 * A cluster of simulated nodes (see the file comment: a fake for tests and
 * benchmarks). `runtimes()` gives one Runtime per node; every call makes fresh views of
 * the same nodes, so a test can "restart the control plane" and find its containers.
 *
 * Node failure: `setNodeDown(id, true)` makes that node's runtime calls reject with
 * UnavailableError (code RUNTIME_UNAVAILABLE) at once, ends its log streams with that
 * error and drops its events, like a network partition; containers keep running and
 * exiting on schedule meanwhile. `setNodeDown(id, false)` makes them visible again as
 * they are by then; events from the outage are not replayed (a level-triggered
 * reconciler resyncs with list()). `wipeNode(id)` loses every container (a replaced
 * machine) without events.
 */
export class SimulatedCluster {
  readonly defaultRunMs: number;
  readonly failureRate: number;
  readonly failureExitCode: number;
  readonly failureWindowMs: number;
  readonly startLatencyMs: number;
  readonly seed: number;
  readonly logLinesPerContainer: number;
  private readonly missingImages: (image: string) => boolean;
  private readonly nodes = new Map<string, SimNode>();
  private readonly heap = new TimerHeap();
  private timer: NodeJS.Timeout | undefined;
  private armedDueMs = Infinity;
  private pendingEvents: { node: SimNode; event: RuntimeEvent }[] = [];
  private flushScheduled = false;
  private readonly programs = new Map<string, SimProgram>();
  private containerSeq = 0;
  private readonly openViews = new Set<SimulatedRuntime>();
  private closed = false;

  constructor(options: SimulatedClusterOptions) {
    const prefix = options.idPrefix ?? 'sim-';
    const base = validateNodeShape(options.shape ?? DEFAULT_NODE_SHAPE, 'shape');
    const shapes = typeof options.nodes === 'number' ? countToShapes(options.nodes, base) : options.nodes;
    this.defaultRunMs = nonNegative(options.defaultRunMs ?? Infinity, 'defaultRunMs');
    this.failureRate = options.failureRate ?? 0;
    if (!(this.failureRate >= 0 && this.failureRate <= 1)) throw new InputError(`failureRate must be between 0 and 1, got ${this.failureRate}`);
    this.failureExitCode = options.failureExitCode ?? 1;
    if (!Number.isInteger(this.failureExitCode) || this.failureExitCode < 1 || this.failureExitCode > 255) {
      throw new InputError(`failureExitCode must be an integer 1..255, got ${this.failureExitCode}`);
    }
    this.failureWindowMs = nonNegative(options.failureWindowMs ?? 60_000, 'failureWindowMs');
    if (!Number.isFinite(this.failureWindowMs)) throw new InputError('failureWindowMs must be finite');
    this.startLatencyMs = nonNegative(options.startLatencyMs ?? 0, 'startLatencyMs');
    this.seed = options.seed ?? 1;
    this.logLinesPerContainer = options.logLinesPerContainer ?? 200;
    this.missingImages = options.missingImages ?? defaultMissingImages;
    const width = Math.max(5, String(shapes.length).length);
    shapes.forEach((shape, i) => {
      const id = `${prefix}${String(i + 1).padStart(width, '0')}`;
      this.nodes.set(id, {
        id,
        shape: validateNodeShape(shape, `nodes[${i}]`),
        down: false,
        containers: new Map(),
        byAgent: new Map(),
        listeners: new Set(),
        waiters: undefined,
      });
    });
  }

  nodeIds(): string[] {
    return [...this.nodes.keys()];
  }

  /** Fresh Runtime views of every node, in node order. */
  runtimes(): SimulatedRuntime[] {
    return this.nodeIds().map((id) => this.runtime(id));
  }

  /** A fresh Runtime view of one node. */
  runtime(nodeId: string): SimulatedRuntime {
    if (this.closed) throw new UnavailableError('RUNTIME_UNAVAILABLE', 'the simulated cluster is closed');
    return new SimulatedRuntime(this, this.node(nodeId));
  }

  shapeOf(nodeId: string): NodeShape {
    return this.node(nodeId).shape;
  }

  isNodeDown(nodeId: string): boolean {
    return this.node(nodeId).down;
  }

  /** See the class comment: a partition, not a crash. */
  setNodeDown(nodeId: string, down: boolean): void {
    const node = this.node(nodeId);
    if (node.down === down) return;
    node.down = down;
    for (const waiter of [...(node.waiters ?? [])]) waiter();
  }

  /** The node lost its disk: every container is gone, silently (no events). */
  wipeNode(nodeId: string): void {
    const node = this.node(nodeId);
    for (const c of node.containers.values()) {
      if (c.exitTimer) this.heap.cancel(c.exitTimer);
      c.exitTimer = undefined;
      c.removed = true;
      c.notify();
    }
    node.containers.clear();
    node.byAgent.clear();
  }

  stats(): SimulatedClusterStats {
    let containers = 0;
    let running = 0;
    let nodesDown = 0;
    for (const node of this.nodes.values()) {
      if (node.down) nodesDown++;
      containers += node.containers.size;
      for (const c of node.containers.values()) if (c.state === 'running') running++;
    }
    return { nodes: this.nodes.size, nodesDown, containers, running, pendingTimers: this.heap.size };
  }

  /** Stops the timer and closes every runtime view; containers are dropped. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.openViews].map((view) => view.close()));
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.heap.clear();
    for (const node of this.nodes.values()) this.wipeNode(node.id);
  }

  // ---- used by SimulatedRuntime ----

  /** @internal */
  node(nodeId: string): SimNode {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new InputError(`no simulated node "${nodeId}"`, { nodeId });
    return node;
  }

  /** @internal */
  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal */
  isImageMissing(image: string): boolean {
    return this.missingImages(image);
  }

  /** @internal The run behaviour for a command, shared with every container that has the same one. */
  program(argv: readonly string[], env: Record<string, string>): SimProgram {
    const usesEnv = argv.some((a) => a.includes('$'));
    const key = `${argv.join('\u0000')}\u0001${simEnvKey(env)}`;
    if (!usesEnv) {
      const cached = this.programs.get(key);
      if (cached) return cached;
    }
    const program = compileSimProgram(argv, env, this.defaultRunMs);
    if (!usesEnv) {
      if (this.programs.size >= PROGRAM_CACHE_LIMIT) this.programs.clear();
      this.programs.set(key, program);
    }
    return program;
  }

  /** @internal */
  nextContainerId(node: SimNode): string {
    return `${node.id}-${(++this.containerSeq).toString(16).padStart(8, '0')}`;
  }

  /** @internal */
  schedule(dueMs: number, fire: () => void): TimerEntry {
    const entry = this.heap.push(dueMs, fire);
    if (dueMs < this.armedDueMs) this.arm();
    return entry;
  }

  /** @internal */
  cancel(entry: TimerEntry): void {
    this.heap.cancel(entry);
  }

  /** @internal Queues an event for the node's watchers; delivered in a batch on the next macrotask. */
  emit(node: SimNode, action: RuntimeEvent['action'], c: SimContainer, time: number): void {
    if (node.down || node.listeners.size === 0) return;
    this.pendingEvents.push({ node, event: { action, containerId: c.id, agentId: c.agentId, time } });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushEvents);
    }
  }

  /** @internal Starts a new run of a created or exited container. */
  startRun(node: SimNode, c: SimContainer, nowMs: number): void {
    c.archiveRun();
    const { endMs, exitCode, oom } = this.planRun(c);
    c.state = 'running';
    c.startedAt = nowMs;
    c.finishedAt = undefined;
    c.exitCode = undefined;
    c.oomKilled = false;
    c.runCount++;
    c.endAt = nowMs + endMs;
    if (Number.isFinite(c.endAt)) {
      const endAt = c.endAt;
      c.exitTimer = this.schedule(endAt, () => this.endRun(node, c, endAt, exitCode, oom));
    }
    this.emit(node, 'start', c, nowMs);
    c.notify();
  }

  /** @internal Ends the current run: by itself, by stop (`stopped`) or by remove. */
  endRun(node: SimNode, c: SimContainer, atMs: number, exitCode: number, oom: boolean, stopped = false): void {
    if (c.state !== 'running') return;
    if (c.exitTimer) this.heap.cancel(c.exitTimer);
    c.exitTimer = undefined;
    c.state = 'exited';
    c.exitCode = exitCode;
    c.oomKilled = oom;
    c.finishedAt = atMs;
    c.endAt = Infinity;
    if (oom) this.emit(node, 'oom', c, atMs);
    this.emit(node, 'die', c, atMs);
    if (stopped) this.emit(node, 'stop', c, atMs);
    c.notify();
  }

  /** @internal Force-removes: kills a running container first (exit 137). */
  destroy(node: SimNode, c: SimContainer, nowMs: number): void {
    this.endRun(node, c, nowMs, 137, false);
    node.containers.delete(c.id);
    node.byAgent.delete(c.agentId);
    c.removed = true;
    this.emit(node, 'destroy', c, nowMs);
    c.notify();
  }

  /**
   * @internal Resolves when the container changes state, the node goes down or up,
   * `dueMs` passes or the signal aborts, whichever is first. Never rejects: the caller
   * looks at what changed.
   */
  waitForChange(node: SimNode, c: SimContainer, dueMs: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerEntry | undefined;
      const done = (): void => {
        if (timer) this.heap.cancel(timer);
        c.deleteWaiter(done);
        node.waiters?.delete(done);
        if (node.waiters?.size === 0) node.waiters = undefined;
        signal.removeEventListener('abort', done);
        resolve();
      };
      if (signal.aborted || this.closed) {
        resolve();
        return;
      }
      c.addWaiter(done);
      (node.waiters ??= new Set()).add(done);
      signal.addEventListener('abort', done, { once: true });
      if (Number.isFinite(dueMs)) timer = this.schedule(dueMs, done);
    });
  }

  /** @internal Like setTimeout on the cluster's heap; rejects with the signal's reason on abort. */
  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = (): void => {
        this.heap.cancel(timer);
        reject(abortReason(signal));
      };
      const timer = this.schedule(Date.now() + ms, () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** @internal */
  viewOpened(view: SimulatedRuntime): void {
    this.openViews.add(view);
    this.timer?.ref();
  }

  /** @internal */
  viewClosed(view: SimulatedRuntime): void {
    this.openViews.delete(view);
    // With every view closed nobody is left to observe the simulation: it must not keep the process alive.
    if (this.openViews.size === 0) this.timer?.unref();
  }

  private planRun(c: SimContainer): { endMs: number; exitCode: number; oom: boolean } {
    const p = c.program;
    let endMs = p.runMs;
    let exitCode = p.exitCode;
    if (p.oomAfterMs !== undefined && p.oomAfterMs <= endMs) {
      return { endMs: p.oomAfterMs, exitCode: 137, oom: true };
    }
    const rate = p.failureRate ?? this.failureRate;
    if (rate > 0) {
      const draw = seededUnit(this.seed, c.agentId, c.runCount);
      if (draw < rate) {
        // Where the draw falls inside [0, rate) also says when the run fails: one draw, uniform over the run.
        const window = Number.isFinite(endMs) ? endMs : this.failureWindowMs;
        endMs = Math.round((draw / rate) * window);
        exitCode = this.failureExitCode;
      }
    }
    return { endMs, exitCode, oom: false };
  }

  private arm(): void {
    const next = this.heap.peekDueMs();
    if (next === undefined || this.closed) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.armedDueMs = Infinity;
      return;
    }
    if (this.timer !== undefined && next >= this.armedDueMs) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedDueMs = next;
    this.timer = setTimeout(this.onTimer, Math.min(MAX_TIMER_DELAY_MS, Math.max(0, next - Date.now())));
    if (this.openViews.size === 0) this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.armedDueMs = Infinity;
    for (const entry of this.heap.popDue(Date.now())) {
      try {
        entry.fire();
      } catch {
        // One broken callback must not stall every other simulated container.
      }
    }
    this.arm();
  };

  private readonly flushEvents = (): void => {
    this.flushScheduled = false;
    const batch = this.pendingEvents;
    this.pendingEvents = [];
    for (const { node, event } of batch) {
      if (node.down) continue;
      for (const watch of node.listeners) {
        if (watch.signal.aborted) {
          node.listeners.delete(watch);
          continue;
        }
        try {
          watch.onEvent(event);
        } catch {
          // A consumer's bug must not end the watch for everybody else (as in the Docker adapter).
        }
      }
    }
  };
}

function countToShapes(count: number, shape: NodeShape): NodeShape[] {
  if (!Number.isInteger(count) || count < 1) throw new InputError(`nodes must be a positive integer or a list of shapes, got ${count}`);
  return new Array<NodeShape>(count).fill(shape);
}

function nonNegative(value: number, name: string): number {
  if (!(value >= 0)) throw new InputError(`${name} must be >= 0 ms, got ${value}`);
  return value;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}
