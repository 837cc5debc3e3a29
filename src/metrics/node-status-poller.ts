import { silentLogger, type Logger } from '../domain/logger.js';
import type { NodeInfo, Runtime } from '../runtime/runtime.js';
import type { RuntimeRegistry } from '../runtime/runtime-registry.js';
import type { Store } from '../store/store.js';
import { linkSignals } from '../domain/linked-signal.js';

/** Amounts of the three schedulable resources, in base units. */
export interface NodeResources {
  cpuMillicores: number;
  memoryBytes: number;
  gpus: number;
}

/** What /metrics shows of one node. */
export interface NodeMetricsSnapshot {
  node: string;
  /** In-memory nodes of the simulated runtime: their capacity is not real. */
  simulated: boolean;
  ready: boolean;
  capacity: NodeResources;
  allocated: NodeResources;
}

/** Requests of one live agent bound to a node. */
export interface NodeAllocationInput {
  node: string;
  cpuRequestMillicores: number;
  memoryRequestMiB: number;
  gpus: number;
}

export interface NodeStatusPollerOptions {
  store: Store;
  runtimes: RuntimeRegistry;
  /** Requests of live agents (UsageSampler.current() caches them), summed per node. */
  allocations: () => readonly NodeAllocationInput[];
  /** @default 10_000 */
  intervalMs?: number;
  /** Per ping/info call. @default 5_000 */
  timeoutMs?: number;
  /** @default silentLogger */
  logger?: Logger;
}

const MiB = 1024 * 1024;

/**
 * Stand-in node source until the node pool lands: pings every runtime, caches its
 * NodeInfo, and pings the store, on a timer; `nodes()` and `ready()` answer from that
 * cache so a scrape costs no runtime call. A runtime that does not answer is not ready and
 * keeps its last known capacity.
 */
export class NodeStatusPoller {
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  private readonly info = new Map<string, NodeInfo>();
  private readonly readyByNode = new Map<string, boolean>();
  private storeReady = false;
  private polled = false;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly o: NodeStatusPollerOptions) {
    this.intervalMs = o.intervalMs ?? 10_000;
    this.timeoutMs = o.timeoutMs ?? 5_000;
    this.logger = o.logger ?? silentLogger;
  }

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

  /** Polls once: runtimes and store in parallel. */
  async pollOnce(signal?: AbortSignal): Promise<void> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const link = linkSignals(signal, timeout);
    const sig = link.signal;
    await Promise.all([
      ...this.o.runtimes.all().map((r) => this.pollRuntime(r, sig)),
      this.o.store.ping().then(
        () => void (this.storeReady = true),
        () => void (this.storeReady = false),
      ),
    ]).finally(link.dispose);
    this.polled = true;
  }

  /** Like GET /ready: the store and at least one runtime (if any) answered the last poll. */
  ready(): boolean {
    const runtimes = this.o.runtimes.all();
    return this.polled && this.storeReady && (runtimes.length === 0 || runtimes.some((r) => this.readyByNode.get(r.nodeId) === true));
  }

  nodes(): NodeMetricsSnapshot[] {
    const allocated = new Map<string, NodeResources>();
    for (const a of this.o.allocations()) {
      if (!a.node) continue;
      const sum = allocated.get(a.node) ?? { cpuMillicores: 0, memoryBytes: 0, gpus: 0 };
      sum.cpuMillicores += a.cpuRequestMillicores;
      sum.memoryBytes += a.memoryRequestMiB * MiB;
      sum.gpus += a.gpus;
      allocated.set(a.node, sum);
    }
    return this.o.runtimes.all().map((r) => {
      const info = this.info.get(r.nodeId);
      return {
        node: r.nodeId,
        simulated: r.driver === 'simulated',
        ready: this.readyByNode.get(r.nodeId) === true,
        // NodeInfo has no GPU inventory yet; the node pool will supply it.
        capacity: { cpuMillicores: info?.cpuMillicores ?? 0, memoryBytes: (info?.memoryMiB ?? 0) * MiB, gpus: 0 },
        allocated: allocated.get(r.nodeId) ?? { cpuMillicores: 0, memoryBytes: 0, gpus: 0 },
      };
    });
  }

  private async pollRuntime(runtime: Runtime, signal: AbortSignal): Promise<void> {
    try {
      await runtime.ping(signal);
      this.info.set(runtime.nodeId, await runtime.info(signal));
      this.readyByNode.set(runtime.nodeId, true);
    } catch (err) {
      if (this.readyByNode.get(runtime.nodeId) !== false) this.logger.warn({ err, node: runtime.nodeId }, 'node did not answer');
      this.readyByNode.set(runtime.nodeId, false);
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.pollOnce(signal);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, this.intervalMs);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}
