import type { Runtime } from '../runtime/runtime.js';
import { DockerRuntime, type DockerRuntimeOptions } from '../runtime/docker/docker-runtime.js';
import { SimulatedCluster } from '../runtime/simulated/simulated-cluster.js';
import { gpuDevicesOf } from '../runtime/simulated/node-shape.js';
import { DEFAULT_MAX_AGENTS, type DockerNodeSpec, type NodePoolEntry } from './node-config.js';
import type { NodeDefinition } from './node-pool-service.js';

const LOCAL_DOCKER_SOCKET = 'unix:///var/run/docker.sock';

/** The runtimes and node definitions of a pool, and how to close what was created for it. */
export interface BuiltNodePool {
  definitions: NodeDefinition[];
  runtimes: Runtime[];
  /** Stops simulated clusters (runtimes are closed by their registry). */
  close(): Promise<void>;
}

/**
 * Creates one runtime per configured node: a DockerRuntime per Docker entry, one
 * SimulatedCluster per simulated entry. With `runtimes` given (tests, embedding), those are
 * the nodes instead; a Docker entry with the same id still supplies labels, taints,
 * reserved, capacity overrides and GPUs.
 *
 * GPUs are discovered with nvidia-smi only for the first node that talks to a Docker on
 * a unix socket without configured GPUs: that is this host's own engine. Other unix-socket
 * daemons on the same host (test setups) would otherwise claim the same devices twice.
 */
export function buildNodePool(
  entries: readonly NodePoolEntry[],
  options: {
    defaultDockerHost?: string | undefined;
    runtimes?: Runtime[] | undefined;
    /** Lock-down settings of every Docker node (instance id, OCI runtime, ...). */
    dockerSecurity?: DockerRuntimeOptions['defaultSecurity'];
  } = {},
): BuiltNodePool {
  const clusters: SimulatedCluster[] = [];
  const definitions: NodeDefinition[] = [];
  let discoveryClaimed = false;
  const dockerDef = (runtime: Runtime, entry: DockerNodeSpec | undefined, effectiveHost: string | undefined): NodeDefinition => {
    const discoverGpus = !discoveryClaimed && entry?.gpus === undefined && (effectiveHost ?? LOCAL_DOCKER_SOCKET).startsWith('unix://') && runtime.driver === 'docker';
    if (discoverGpus) discoveryClaimed = true;
    return {
      id: runtime.nodeId,
      driver: runtime.driver,
      simulated: runtime.driver === 'simulated',
      runtime,
      labels: entry?.labels ?? {},
      taints: entry?.taints ?? [],
      reserved: entry?.reserved ?? { cpuMillicores: 0, memoryMiB: 0 },
      maxAgents: entry?.maxAgents ?? DEFAULT_MAX_AGENTS,
      capacityOverride: entry?.capacityOverride,
      gpus: entry?.gpus,
      discoverGpus,
    };
  };

  if (options.runtimes) {
    const byId = new Map(entries.filter((e): e is DockerNodeSpec => e.driver === 'docker').map((e) => [e.id, e]));
    for (const runtime of options.runtimes) {
      const entry = byId.get(runtime.nodeId);
      definitions.push(dockerDef(runtime, entry, entry?.dockerHost ?? options.defaultDockerHost));
    }
    return { definitions, runtimes: options.runtimes, close: async () => undefined };
  }

  for (const entry of entries) {
    if (entry.driver === 'docker') {
      const host = entry.dockerHost ?? options.defaultDockerHost;
      definitions.push(dockerDef(new DockerRuntime({ nodeId: entry.id, dockerHost: host, defaultSecurity: options.dockerSecurity }), entry, host));
      continue;
    }
    const shape = { cpuMillicores: entry.shape.cpuMillicores, memoryMiB: entry.shape.memoryMiB, gpus: entry.shape.gpus };
    const cluster = new SimulatedCluster({
      nodes: entry.count,
      shape,
      idPrefix: `${entry.idPrefix}-`,
      defaultRunMs: entry.runMs,
      failureRate: entry.failureRate,
      seed: entry.seed,
    });
    clusters.push(cluster);
    const gpus = gpuDevicesOf(shape);
    for (const runtime of cluster.runtimes()) {
      definitions.push({
        id: runtime.nodeId,
        driver: runtime.driver,
        simulated: true,
        runtime,
        labels: entry.labels,
        taints: entry.taints,
        reserved: entry.reserved,
        maxAgents: entry.maxAgents,
        gpus,
      });
    }
  }
  return {
    definitions,
    runtimes: definitions.map((d) => d.runtime),
    close: async () => {
      await Promise.all(clusters.map((c) => c.close()));
    },
  };
}
