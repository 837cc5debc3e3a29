/**
 * SIMULATED: one node of a SimulatedCluster, behind the Runtime port. A fake for tests
 * and benchmarks, not a place agents really run: create/start/stop only change records
 * in memory, and a container's output and exit come from its command as sim-program.ts
 * interprets it. `driver` is 'simulated' and `simulated` is true so nothing mistakes it
 * for capacity.
 */
import { NotFoundError, UnavailableError } from '../../domain/errors.js';
import {
  ImageNotFoundError,
  containerName,
  type ContainerSpec,
  type LogLine,
  type LogOptions,
  type NodeInfo,
  type ObservedContainer,
  type Runtime,
  type RuntimeEvent,
} from '../runtime.js';
import type { NodeShape } from './node-shape.js';
import { SimContainer } from './sim-container.js';
import type { SimNode, SimWatch, SimulatedCluster } from './simulated-cluster.js';
import { linkSignals, type LinkedSignal } from '../../domain/linked-signal.js';

/** What a simulated process does on SIGTERM: exits at once with 128 + 15. */
const SIGTERM_EXIT_CODE = 143;
const SIGKILL_EXIT_CODE = 137;
/** Every container's name is this plus its agent id (containerName). */
const NAME_PREFIX = containerName('');

/**
 * A Runtime view of one simulated node. Views are cheap and stateless apart from their
 * own watchers and log streams (ended by close()); the containers live in the cluster.
 * Every call answers at once (or after `startLatencyMs` for start), never calls back
 * synchronously, and rejects with UnavailableError while the node is down.
 */
export class SimulatedRuntime implements Runtime {
  readonly driver = 'simulated';
  readonly simulated = true;
  readonly nodeId: string;
  private closed = false;
  /**
   * Aborted by close(); made on first use (a log stream, a stop grace, a start latency):
   * an AbortController with its signal is about 600 bytes, and a pool of simulated
   * nodes holds one view per node.
   */
  private closing: AbortController | undefined;
  /** This view's watches, removed from the node by close(). */
  private watches: SimWatch[] | undefined;

  /** Use SimulatedCluster.runtimes() or .runtime(nodeId). */
  constructor(
    private readonly cluster: SimulatedCluster,
    private readonly node: SimNode,
  ) {
    this.nodeId = node.id;
    cluster.viewOpened(this);
  }

  /** The node's simulated size (cpu, memory, GPUs, labels). */
  get shape(): NodeShape {
    return this.node.shape;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    this.check('ping', signal);
  }

  async info(signal?: AbortSignal): Promise<NodeInfo> {
    this.check('info', signal);
    const { cpuMillicores, memoryMiB } = this.node.shape;
    return { cpuMillicores, memoryMiB, os: 'linux', arch: 'amd64', runtimeVersion: 'simulated', isolationClasses: ['runc', 'gvisor'] };
  }

  /** Idempotent by agent id; ImageNotFoundError for images the cluster's `missingImages` matches. */
  async create(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    this.check('create', signal);
    if (this.cluster.isImageMissing(spec.image)) {
      throw new ImageNotFoundError(spec.image, `simulated node ${this.nodeId} treats it as missing`);
    }
    // Names are containerName(agentId), so the one container of this agent is the only
    // holder of its name: no other agent's container can take it.
    const existing = this.node.byAgent.get(spec.agentId);
    if (existing !== undefined) return existing.id;
    const program = this.cluster.program([...spec.command, ...spec.args], spec.env);
    const c = new SimContainer(this.cluster.nextContainerId(this.node), spec.agentId, program);
    this.node.containers.set(c.id, c);
    this.node.byAgent.set(spec.agentId, c);
    this.cluster.emit(this.node, 'create', c, Date.now());
    return c.id;
  }

  /** Accepts the container id or name. Throws NotFoundError (CONTAINER_NOT_FOUND) when absent. */
  async start(containerId: string, signal?: AbortSignal): Promise<void> {
    this.check('start', signal);
    let c = this.require(containerId);
    if (c.state === 'running') return;
    if (this.cluster.startLatencyMs > 0) {
      const call = this.callSignal(signal);
      try {
        await this.cluster.sleep(this.cluster.startLatencyMs, call.signal);
      } finally {
        call.dispose();
      }
      this.check('start', signal);
      c = this.require(containerId);
      if (c.state === 'running') return;
    }
    this.cluster.startRun(this.node, c, Date.now());
  }

  /**
   * A simulated process exits on SIGTERM at once (exit 143), unless its env has
   * SIM_IGNORE_SIGTERM: then it gets the grace period (or until it ends by itself) and
   * is killed (137). Absent or not running: a no-op.
   */
  async stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    this.check('stop', signal);
    const c = this.find(containerId);
    if (c === undefined || c.state !== 'running') return;
    if (!c.program.ignoresSigterm) {
      this.cluster.endRun(this.node, c, Date.now(), SIGTERM_EXIT_CODE, false, true);
      return;
    }
    const run = c.runCount;
    const deadline = Date.now() + Math.max(0, graceMs);
    const call = this.callSignal(signal);
    try {
      while (c.state === 'running' && c.runCount === run && !c.removed && Date.now() < deadline) {
        await this.cluster.waitForChange(this.node, c, deadline, call.signal);
        call.signal.throwIfAborted();
        this.check('stop', signal);
      }
    } finally {
      call.dispose();
    }
    if (c.state === 'running' && c.runCount === run) this.cluster.endRun(this.node, c, Date.now(), SIGKILL_EXIT_CODE, false, true);
  }

  /** Force-removes (a running container dies with 137 first). Absent: a no-op. */
  async remove(containerId: string, signal?: AbortSignal): Promise<void> {
    this.check('remove', signal);
    const c = this.find(containerId);
    if (c !== undefined) this.cluster.destroy(this.node, c, Date.now());
  }

  /** By container id or name (as Docker); undefined when absent. */
  async inspect(containerId: string, signal?: AbortSignal): Promise<ObservedContainer | undefined> {
    this.check('inspect', signal);
    return this.find(containerId)?.observe();
  }

  /** Every container on this node (all simulated containers are managed). O(containers on the node). */
  async list(signal?: AbortSignal): Promise<ObservedContainer[]> {
    this.check('list', signal);
    const out: ObservedContainer[] = [];
    for (const c of this.node.containers.values()) out.push(c.observe());
    return out;
  }

  /**
   * Events are batched and delivered on a later macrotask, never inside the call that
   * caused them. While the node is down its events are dropped (not replayed); the
   * subscription itself survives the outage, as the Docker adapter's reconnect does.
   */
  watch(onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): void {
    if (signal.aborted || this.closed) return;
    const listeners = this.node.listeners;
    // Not AbortSignal.any([signal, closing]): Node keeps such a combined signal (and a WeakRef
    // in each source) alive while it has a listener, about 1 kB per simulated node. Nor a
    // listener on `signal`: one controller watches every node, thousands of listeners on one
    // signal. The caller's signal is checked when an event is delivered instead (so an aborted
    // watch gets nothing), aborted watches are dropped here and on delivery, and close()
    // removes this view's.
    for (const w of listeners) if (w.signal.aborted) listeners.delete(w);
    const watch: SimWatch = { onEvent, signal };
    listeners.add(watch);
    // A new array of the exact size: one grown by push reserves 17 slots (150 bytes per node).
    this.watches = [...(this.watches ?? []).filter((w) => !w.signal.aborted), watch];
  }

  /**
   * The container's output: echo lines of its script (opaque commands: "simulated agent
   * started" / "exited with code N"), the last `logLinesPerContainer` lines over its
   * recent runs. With follow, waits for later lines until the container stops, the signal
   * aborts or the view closes; throws UnavailableError if the node goes down meanwhile.
   * Throws NotFoundError (CONTAINER_NOT_FOUND) when the container does not exist.
   */
  async *logs(containerId: string, options: LogOptions, signal?: AbortSignal): AsyncGenerator<LogLine> {
    this.check('logs', signal);
    const c = this.require(containerId);
    const ring = this.cluster.logLinesPerContainer;
    const { sinceMs, tail } = options;
    const wanted = (line: LogLine): boolean => sinceMs === undefined || line.time >= sinceMs;
    const all = c.lines(Date.now(), ring);
    let lastSeq = all.at(-1)?.seq ?? -1;
    let initial = all.filter((l) => wanted(l.line));
    if (tail !== undefined) initial = tail <= 0 ? [] : initial.slice(-Math.floor(tail));
    for (const l of initial) yield l.line;
    if (options.follow !== true) return;

    const stream = this.callSignal(signal);
    try {
      for (;;) {
        if (stream.signal.aborted || c.removed || this.cluster.isClosed) return;
        this.check('logs', undefined);
        const now = Date.now();
        for (const l of c.lines(now, ring)) {
          if (l.seq <= lastSeq) continue;
          lastSeq = l.seq;
          if (wanted(l.line)) yield l.line;
        }
        if (c.state !== 'running') return;
        await this.cluster.waitForChange(this.node, c, c.nextChangeAt(now), stream.signal);
      }
    } finally {
      stream.dispose();
    }
  }

  /** Ends this view's watches and log streams; the node and its containers stay in the cluster. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches ?? []) this.node.listeners.delete(w);
    this.watches = undefined;
    this.closing?.abort();
    this.cluster.viewClosed(this);
  }

  /** The caller's signal or this view closing; dispose it when the call ends (linked-signal.ts says why). */
  private callSignal(signal: AbortSignal | undefined): LinkedSignal {
    if (this.closing === undefined) {
      this.closing = new AbortController();
      if (this.closed) this.closing.abort();
    }
    return linkSignals(signal, this.closing.signal);
  }

  private check(operation: string, signal: AbortSignal | undefined): void {
    signal?.throwIfAborted();
    if (this.cluster.isClosed) {
      throw new UnavailableError('RUNTIME_UNAVAILABLE', `simulated cluster is closed (${operation} on node ${this.nodeId})`, {
        nodeId: this.nodeId,
        operation,
        simulated: true,
      });
    }
    if (this.node.down) {
      throw new UnavailableError('RUNTIME_UNAVAILABLE', `simulated node ${this.nodeId} is down (set by SimulatedCluster.setNodeDown); ${operation} failed`, {
        nodeId: this.nodeId,
        operation,
        simulated: true,
      });
    }
  }

  private find(idOrName: string): SimContainer | undefined {
    const c = this.node.containers.get(idOrName);
    if (c !== undefined || !idOrName.startsWith(NAME_PREFIX)) return c;
    return this.node.byAgent.get(idOrName.slice(NAME_PREFIX.length));
  }

  private require(idOrName: string): SimContainer {
    const c = this.find(idOrName);
    if (c === undefined) {
      throw new NotFoundError('CONTAINER_NOT_FOUND', `container ${idOrName} does not exist on simulated node ${this.nodeId}`, {
        nodeId: this.nodeId,
        containerId: idOrName,
      });
    }
    return c;
  }
}
