import { DomainError, InputError } from '../domain/errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { DockerRuntime, type DockerRuntimeOptions } from '../runtime/docker/docker-runtime.js';
import { createKubernetesRuntime, type KubeBindingOptions, type KubeNodeSnapshot, type KubePlacementRequest } from '../runtime/kubernetes/kubernetes-runtime.js';
import type { TenantQuota } from '../runtime/kubernetes/namespace-manifests.js';
import { SimulatedCluster } from '../runtime/simulated/simulated-cluster.js';
import { gpuDevicesOf } from '../runtime/simulated/node-shape.js';
import type { QuotaLimits } from '../store/store.js';
import type { Node } from '../domain/node.js';
import { Scheduler } from '../scheduler/index.js';
import { DEFAULT_MAX_AGENTS, type DockerNodeSpec, type KubernetesNodeSpec, type NodePoolEntry } from './node-config.js';
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
    /**
     * Installation id for Kubernetes nodes (labels; list/watch scope).
     * @default dockerSecurity.instanceId
     */
    instanceId?: string | undefined;
    /**
     * A tenant's quota limits, mirrored into its namespace (ResourceQuota, LimitRange) when a
     * Kubernetes node creates the tenant's first agent; undefined: namespaces get no quota.
     */
    tenantQuota?: ((tenantId: string) => Promise<QuotaLimits>) | undefined;
  } = {},
): BuiltNodePool {
  const clusters: SimulatedCluster[] = [];
  const definitions: NodeDefinition[] = [];
  let discoveryClaimed = false;
  const dockerDef = (runtime: Runtime, entry: DockerNodeSpec | KubernetesNodeSpec | undefined, effectiveHost: string | undefined): NodeDefinition => {
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
    const byId = new Map(entries.filter((e) => e.driver !== 'simulated').map((e) => [e.id, e]));
    for (const runtime of options.runtimes) {
      const entry = byId.get(runtime.nodeId);
      definitions.push(dockerDef(runtime, entry, entry?.driver === 'docker' ? (entry.dockerHost ?? options.defaultDockerHost) : undefined));
    }
    return { definitions, runtimes: options.runtimes, close: async () => undefined };
  }

  for (const entry of entries) {
    if (entry.driver === 'kubernetes') {
      definitions.push(dockerDef(kubernetesRuntimeOf(entry, options.instanceId ?? options.dockerSecurity?.instanceId, options.tenantQuota), entry, undefined));
      continue;
    }
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

/**
 * The runtime of one cluster. Credentials are loaded here, at boot: a missing kubeconfig
 * or unknown context fails the start, naming the node, instead of a node that is never Ready.
 */
function kubernetesRuntimeOf(entry: KubernetesNodeSpec, instanceId: string | undefined, tenantQuota: ((tenantId: string) => Promise<QuotaLimits>) | undefined): Runtime {
  try {
    return createKubernetesRuntime({
      nodeId: entry.id,
      kubeconfigPath: entry.kubeconfigPath,
      context: entry.context,
      inCluster: entry.inCluster,
      instanceId,
      binding: entry.schedulerName ? { schedulerName: entry.schedulerName, chooseNode: leastAllocatedNode } : undefined,
      namespaces: {
        egressProxy: entry.egressProxy,
        quotaFor: tenantQuota ? async (tenantId) => namespaceQuotaOf(await tenantQuota(tenantId)) : undefined,
      },
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new InputError(`nodes config: kubernetes node "${entry.id}": ${message}`, { nodeId: entry.id, causeCode: err instanceof DomainError ? err.code : undefined });
  }
}

/**
 * A tenant's platform quota as its namespace's ResourceQuota: `pods` counts Pods that
 * have not ended, which is the platform's `running`; without it, the record limit
 * `agents` is a looser bound (every live agent is a record). Per-agent maximums have no
 * namespace-wide equivalent; the platform's own admission enforces them. Undefined when
 * nothing is limited.
 */
export function namespaceQuotaOf(limits: QuotaLimits): TenantQuota | undefined {
  const quota: TenantQuota = {
    cpuMillicores: limits.cpuMillicores,
    memoryMiB: limits.memoryMiB,
    gpu: limits.gpu,
    agents: limits.running ?? limits.agents,
  };
  return Object.values(quota).some((v) => v !== undefined) ? quota : undefined;
}

/** The scheduler keeps counts in Int32Arrays: "no limit" must fit in one. */
const UNLIMITED_PODS = 2 ** 31 - 1;

/** As many GPU ids as a count: the scheduler counts devices by id; the device plugin picks the real ones. */
const gpuIds = (count: number): string[] => Array.from({ length: Math.max(0, count) }, (_, i) => `gpu${i}`);

/** A cluster Node as the platform's scheduler sees a node: allocatable as capacity, bound Pods' requests as allocated. */
function schedulerNodeOf(n: KubeNodeSnapshot): Node {
  const devices = gpuIds(n.allocatable.gpu);
  return {
    id: n.name,
    driver: 'kubernetes',
    simulated: false,
    labels: n.labels,
    taints: n.taints,
    // A Node that does not report "pods" (a real kubelet always does) is not limited by count.
    capacity: { cpuMillicores: n.allocatable.cpuMillicores, memoryMiB: n.allocatable.memoryMiB, maxAgents: n.allocatable.pods > 0 ? n.allocatable.pods : UNLIMITED_PODS, gpus: devices.map((id) => ({ id, model: 'nvidia.com/gpu' })) },
    reserved: { cpuMillicores: 0, memoryMiB: 0 },
    allocated: { cpuMillicores: n.requested.cpuMillicores, memoryMiB: Math.ceil(n.requested.memoryMiB), agents: n.requested.pods, gpuIds: devices.slice(0, n.requested.gpu) },
    ready: n.ready,
    cordoned: n.unschedulable,
    unhealthy: false,
  };
}

/**
 * The scheduler binding mode uses: the platform's own (kube-scheduler semantics), without
 * sampling, so every Node is considered (a cluster has few Nodes next to the platform's pool).
 * One instance is safe to share: schedule() is synchronous.
 */
const clusterScheduler = new Scheduler({ sampling: false });

/**
 * Binding mode's choice of a cluster node, by the platform's pure scheduler (src/scheduler)
 * over the cluster's Nodes: filters NodeReady, NodeUnschedulable (cordoned), TaintToleration
 * (NoSchedule and NoExecute taints the Pod does not tolerate), NodeSelector and required node
 * affinity, Fit (allocatable cpu, memory and pod count minus the requests of the Pods bound
 * there) and GPU (allocatable nvidia.com/gpu); then LeastAllocated (the "spread" policy),
 * preferred affinity and PreferNoSchedule scores; ties go to the name that sorts first.
 * Undefined (no Node fits) leaves the Pod Pending.
 */
export const leastAllocatedNode: KubeBindingOptions['chooseNode'] = (request: KubePlacementRequest, nodes: KubeNodeSnapshot[]) => {
  if (nodes.length === 0) return undefined;
  const decision = clusterScheduler.schedule(
    {
      id: request.agentId || request.podName,
      spec: {
        schedulingPolicy: 'spread',
        nodeSelector: request.nodeSelector,
        tolerations: request.tolerations,
        affinity: request.affinity,
        resources: { cpuMillicores: request.cpuMillicores, memoryMiB: Math.ceil(request.memoryMiB), gpu: request.gpu },
      },
    },
    { nodes: nodes.map(schedulerNodeOf) },
  );
  return decision.unschedulable ? undefined : decision.nodeId;
};
