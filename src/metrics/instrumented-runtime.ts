import type { ContainerSpec, LogLine, LogOptions, NodeInfo, ObservedContainer, Runtime, RuntimeEvent } from '../runtime/runtime.js';

/** Where instrumentRuntime reports; PlatformMetrics implements it. */
export interface RuntimeMetrics {
  observeRuntimeOperation(driver: string, operation: string, seconds: number, failed: boolean): void;
}

/**
 * Wraps a runtime so that every request/response call (ping, info, create, start, stop,
 * remove, inspect, list) is timed and its failures counted, by driver and operation.
 * Calls that fail because their own signal aborted are timed but not counted as errors:
 * the caller gave up, the runtime did not fail. `watch` and `logs` are streams whose
 * length says nothing about the runtime's health, so they pass through untimed.
 */
export function instrumentRuntime(runtime: Runtime, metrics: RuntimeMetrics): Runtime {
  return new InstrumentedRuntime(runtime, metrics);
}

/**
 * A class rather than an object of arrow functions: one wrapper per node, and at 5,000
 * nodes a dozen closures each (with their contexts) were about 5 kB per node of heap.
 */
class InstrumentedRuntime implements Runtime {
  readonly driver: string;
  readonly nodeId: string;

  constructor(
    private readonly runtime: Runtime,
    private readonly metrics: RuntimeMetrics,
  ) {
    this.driver = runtime.driver;
    this.nodeId = runtime.nodeId;
  }

  ping(signal?: AbortSignal): Promise<void> {
    return this.timed('ping', signal, () => this.runtime.ping(signal));
  }

  info(signal?: AbortSignal): Promise<NodeInfo> {
    return this.timed('info', signal, () => this.runtime.info(signal));
  }

  create(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    return this.timed('create', signal, () => this.runtime.create(spec, signal));
  }

  start(containerId: string, signal?: AbortSignal): Promise<void> {
    return this.timed('start', signal, () => this.runtime.start(containerId, signal));
  }

  stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    return this.timed('stop', signal, () => this.runtime.stop(containerId, graceMs, signal));
  }

  remove(containerId: string, signal?: AbortSignal): Promise<void> {
    return this.timed('remove', signal, () => this.runtime.remove(containerId, signal));
  }

  inspect(containerId: string, signal?: AbortSignal): Promise<ObservedContainer | undefined> {
    return this.timed('inspect', signal, () => this.runtime.inspect(containerId, signal));
  }

  list(signal?: AbortSignal): Promise<ObservedContainer[]> {
    return this.timed('list', signal, () => this.runtime.list(signal));
  }

  watch(onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): void {
    this.runtime.watch(onEvent, signal);
  }

  logs(containerId: string, options: LogOptions, signal?: AbortSignal): AsyncIterable<LogLine> {
    return this.runtime.logs(containerId, options, signal);
  }

  close(): Promise<void> {
    return this.runtime.close();
  }

  private async timed<T>(operation: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    const startedMs = performance.now();
    let failed = false;
    try {
      return await call();
    } catch (err) {
      failed = signal?.aborted !== true;
      throw err;
    } finally {
      this.metrics.observeRuntimeOperation(this.driver, operation, (performance.now() - startedMs) / 1000, failed);
    }
  }
}
