import type { Clock } from '../domain/clock.js';
import type { Logger } from '../domain/logger.js';
import type { Runtime } from '../runtime/runtime.js';
import { DockerRuntime } from '../runtime/docker/docker-runtime.js';
import { parseDockerHost } from '../runtime/docker/docker-host.js';
import { KubernetesRuntime } from '../runtime/kubernetes/kubernetes-runtime.js';
import type { UsageCollector } from './usage-sampler.js';
import { createDockerUsageCollector } from './docker-usage-collector.js';
import { KubernetesUsageCollector } from './kubernetes-usage-collector.js';

export interface UsageCollectorsOptions {
  /** The node runtimes as built (not instrumented): their class says how to sample them. */
  runtimes: readonly Runtime[];
  /** DOCKER_HOST: the daemon of a Docker node whose runtime is not a DockerRuntime (tests). */
  defaultDockerHost: string | undefined;
  clock: Clock;
  logger: Logger;
}

/**
 * Which collector samples the containers of a node. Docker nodes: this machine's cgroup
 * files, with the node's own daemon's stats API as fallback. Kubernetes nodes: the
 * cluster's metrics.k8s.io when it serves it (asked again every 5 minutes when it does
 * not). Other drivers (simulated) have no containers to sample: undefined.
 *
 * Collectors are made on first use, one per node: a pool without Docker nodes never
 * loads the Docker client (about 12 MiB of resident memory with its dependencies).
 */
export function usageCollectors(o: UsageCollectorsOptions): (runtime: Runtime) => UsageCollector | undefined {
  const byNode = new Map<string, UsageCollector | undefined>();
  const source = new Map(o.runtimes.map((r) => [r.nodeId, r]));
  const logger = o.logger.child({ component: 'usage-sampler' });
  const make = (runtime: Runtime): UsageCollector | undefined => {
    const built = source.get(runtime.nodeId) ?? runtime;
    if (built instanceof KubernetesRuntime) return new KubernetesUsageCollector({ source: built, nodeId: built.nodeId, clock: o.clock, logger });
    if (built instanceof DockerRuntime) return createDockerUsageCollector(built.endpoint, logger);
    if (runtime.driver === 'docker') return createDockerUsageCollector(parseDockerHost(o.defaultDockerHost), logger);
    return undefined;
  };
  return (runtime) => {
    if (!byNode.has(runtime.nodeId)) byNode.set(runtime.nodeId, make(runtime));
    return byNode.get(runtime.nodeId);
  };
}
