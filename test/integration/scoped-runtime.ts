import type { ContainerSpec, LogLine, LogOptions, NodeInfo, ObservedContainer, Runtime, RuntimeEvent } from '../../src/runtime/runtime.js';

/**
 * A real runtime whose `list()` shows only containers of agents this test platform
 * created. Why: the controller's orphan sweep removes every managed container whose
 * agent is missing from *its* store, and the integration test files (and other test
 * suites) share one dockerd, each platform with its own store. Without this scope, one
 * file's platform would delete the containers of another file's agents mid-test.
 * Every other call goes straight to the wrapped runtime.
 */
export class ScopedRuntime implements Runtime {
  readonly driver: string;
  readonly nodeId: string;

  constructor(
    private readonly inner: Runtime,
    private readonly owns: (agentId: string) => boolean,
  ) {
    this.driver = inner.driver;
    this.nodeId = inner.nodeId;
  }

  ping(signal?: AbortSignal): Promise<void> {
    return this.inner.ping(signal);
  }
  info(signal?: AbortSignal): Promise<NodeInfo> {
    return this.inner.info(signal);
  }
  create(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    return this.inner.create(spec, signal);
  }
  start(containerId: string, signal?: AbortSignal): Promise<void> {
    return this.inner.start(containerId, signal);
  }
  stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    return this.inner.stop(containerId, graceMs, signal);
  }
  remove(containerId: string, signal?: AbortSignal): Promise<void> {
    return this.inner.remove(containerId, signal);
  }
  inspect(containerId: string, signal?: AbortSignal): Promise<ObservedContainer | undefined> {
    return this.inner.inspect(containerId, signal);
  }
  async list(signal?: AbortSignal): Promise<ObservedContainer[]> {
    return (await this.inner.list(signal)).filter((c) => this.owns(c.agentId));
  }
  watch(onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): void {
    // Not filtered: an event for an agent of another store only queues a key that
    // reconciles to nothing, and filtering would hide events of agents created a
    // moment before the harness learns their id.
    this.inner.watch(onEvent, signal);
  }
  logs(containerId: string, options: LogOptions, signal?: AbortSignal): AsyncIterable<LogLine> {
    return this.inner.logs(containerId, options, signal);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
