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
  const timed = async <T>(operation: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> => {
    const startedMs = performance.now();
    let failed = false;
    try {
      return await call();
    } catch (err) {
      failed = signal?.aborted !== true;
      throw err;
    } finally {
      metrics.observeRuntimeOperation(runtime.driver, operation, (performance.now() - startedMs) / 1000, failed);
    }
  };
  return {
    driver: runtime.driver,
    nodeId: runtime.nodeId,
    ping: (signal?: AbortSignal): Promise<void> => timed('ping', signal, () => runtime.ping(signal)),
    info: (signal?: AbortSignal): Promise<NodeInfo> => timed('info', signal, () => runtime.info(signal)),
    create: (spec: ContainerSpec, signal?: AbortSignal): Promise<string> => timed('create', signal, () => runtime.create(spec, signal)),
    start: (containerId: string, signal?: AbortSignal): Promise<void> => timed('start', signal, () => runtime.start(containerId, signal)),
    stop: (containerId: string, graceMs: number, signal?: AbortSignal): Promise<void> => timed('stop', signal, () => runtime.stop(containerId, graceMs, signal)),
    remove: (containerId: string, signal?: AbortSignal): Promise<void> => timed('remove', signal, () => runtime.remove(containerId, signal)),
    inspect: (containerId: string, signal?: AbortSignal): Promise<ObservedContainer | undefined> =>
      timed('inspect', signal, () => runtime.inspect(containerId, signal)),
    list: (signal?: AbortSignal): Promise<ObservedContainer[]> => timed('list', signal, () => runtime.list(signal)),
    watch: (onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): void => runtime.watch(onEvent, signal),
    logs: (containerId: string, options: LogOptions, signal?: AbortSignal): AsyncIterable<LogLine> => runtime.logs(containerId, options, signal),
    close: (): Promise<void> => runtime.close(),
  };
}
