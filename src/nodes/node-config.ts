import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { DomainError, InputError } from '../domain/errors.js';
import type { GpuDevice, Taint } from '../domain/node.js';
import { parseCpuMillicores, parseMemoryMiB } from '../domain/quantity.js';

const require = createRequire(import.meta.url);
/** The yaml package (about 8 MiB resident) loads only when a nodes file is read. */
const parseYaml = (text: string): unknown => (require('yaml') as typeof import('yaml')).parse(text);

/**
 * The node pool as configured: `AGENT_PLATFORM_NODES_FILE` (YAML or JSON) or
 * `AGENT_PLATFORM_NODES` (inline JSON), a list of entries. Without either, one Docker node:
 * the local host, named by AGENT_PLATFORM_NODE_NAME.
 *
 * ```yaml
 * - id: local                       # docker: one node per Docker host
 *   driver: docker
 *   dockerHost: unix:///var/run/docker.sock   # or tcp://10.0.0.5:2375; default DOCKER_HOST
 *   labels: { zone: a }
 *   taints: [{ key: gpu, value: "true", effect: NoSchedule }]
 *   reserved: { cpu: 500m, memory: 512Mi }
 *   capacity: { cpu: "4", memory: 8Gi }  # overrides what the engine reports (tests, shared hosts)
 *   maxAgents: 110
 *   gpus: [{ id: "0", model: A100, memoryMiB: 40960 }]
 * - driver: kubernetes              # kubernetes: a whole cluster is one node
 *   id: prod-eu                     # default: k8s-<context>, or k8s without a context
 *   kubeconfig: /etc/ap/kubeconfig  # default: $KUBECONFIG, ~/.kube/config, else the Pod's service account
 *   context: prod-eu                # default: the kubeconfig's current-context
 *   schedulerName: agent-platform   # binding mode: the platform picks the cluster node; default kube-scheduler
 *   egressProxy: { cidr: 10.96.12.7/32, port: 3128,   # the Service Pods are given as HTTP_PROXY
 *                  pods: { namespace: agent-platform, labels: { app.kubernetes.io/name: agent-platform }, port: 3128 } }
 *   maxAgents: 1000                 # default 1000 (a cluster, not one kubelet)
 * - driver: simulated               # simulated: `count` in-memory nodes of one shape
 *   count: 100
 *   idPrefix: sim
 *   shape: { cpu: "8", memory: 32Gi, gpus: { count: 4, model: A100 } }
 *   runMs: 5000
 *   failureRate: 0.01
 * ```
 */

const NodeId = z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be lowercase letters, digits, "-" or "." (DNS-1123 subdomain)');
const LabelMap = z.record(z.string().min(1).max(253), z.string().max(63));
const TaintInput = z.strictObject({
  key: z.string().min(1).max(253),
  value: z.string().max(63).optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']),
});
const Quantity = z.union([z.string().min(1).max(32), z.number().nonnegative()]);
const ResourceAmounts = z.strictObject({ cpu: Quantity.optional(), memory: Quantity.optional() });
const GpuInput = z.strictObject({ id: z.string().min(1).max(128), model: z.string().min(1).max(128), memoryMiB: z.number().int().positive().optional() });

const DockerEntry = z.strictObject({
  id: NodeId,
  driver: z.literal('docker'),
  dockerHost: z
    .string()
    .regex(/^(unix:\/\/\/|tcp:\/\/)/, 'must be unix:///path or tcp://host:port')
    .optional(),
  labels: LabelMap.optional(),
  taints: z.array(TaintInput).max(64).optional(),
  reserved: ResourceAmounts.optional(),
  capacity: ResourceAmounts.optional(),
  maxAgents: z.number().int().min(1).max(100_000).optional(),
  gpus: z.array(GpuInput).max(64).optional(),
});

const SimulatedEntry = z.strictObject({
  driver: z.literal('simulated'),
  count: z.number().int().min(1).max(100_000),
  idPrefix: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,40})?$/, 'must be lowercase letters, digits or "-"').optional(),
  shape: z.strictObject({
    cpu: Quantity,
    memory: Quantity,
    gpus: z.strictObject({ count: z.number().int().min(0).max(64), model: z.string().min(1).max(128), memoryMiB: z.number().int().positive().optional() }).optional(),
  }),
  labels: LabelMap.optional(),
  taints: z.array(TaintInput).max(64).optional(),
  reserved: ResourceAmounts.optional(),
  maxAgents: z.number().int().min(1).max(100_000).optional(),
  runMs: z.number().int().min(0).optional(),
  failureRate: z.number().min(0).max(1).optional(),
  seed: z.number().int().optional(),
});

const KubernetesEntry = z.strictObject({
  id: NodeId.optional(),
  driver: z.literal('kubernetes'),
  kubeconfig: z.string().min(1).max(4096).optional(),
  context: z.string().min(1).max(253).optional(),
  inCluster: z.boolean().optional(),
  schedulerName: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be a DNS-1123 subdomain').optional(),
  egressProxy: z
    .strictObject({
      cidr: z.string().regex(/^[0-9a-fA-F:.]+\/\d{1,3}$/, 'must be a CIDR such as 10.96.12.7/32'),
      port: z.number().int().min(1).max(65_535),
      // The platform Pods behind the Service (CNIs that match egress policies after DNAT).
      pods: z
        .strictObject({
          namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a namespace name (DNS-1123 label)'),
          labels: LabelMap.refine((m) => Object.keys(m).length > 0, 'must name at least one label'),
          port: z.number().int().min(1).max(65_535),
        })
        .optional(),
    })
    .optional(),
  labels: LabelMap.optional(),
  taints: z.array(TaintInput).max(64).optional(),
  reserved: ResourceAmounts.optional(),
  capacity: ResourceAmounts.optional(),
  maxAgents: z.number().int().min(1).max(1_000_000).optional(),
  gpus: z.array(GpuInput).max(4096).optional(),
});

const NodesFile = z.array(z.discriminatedUnion('driver', [DockerEntry, SimulatedEntry, KubernetesEntry])).min(1, 'must list at least one node');

/** Agents per node unless configured: kubelet's default maxPods. */
export const DEFAULT_MAX_AGENTS = 110;

/**
 * Agents on a Kubernetes node (a whole cluster) unless configured. Each kubelet still
 * enforces its own maxPods; this only bounds what the platform's scheduler sends, so it
 * is set well above one kubelet's 110 rather than derived from a cluster size that changes.
 */
export const DEFAULT_CLUSTER_MAX_AGENTS = 1_000;

interface CommonNodeSpec {
  id: string;
  labels: Record<string, string>;
  taints: Taint[];
  reserved: { cpuMillicores: number; memoryMiB: number };
  maxAgents: number;
}

/** One Docker host, compiled: quantities in base units, defaults applied. */
export interface DockerNodeSpec extends CommonNodeSpec {
  driver: 'docker';
  /** undefined: DOCKER_HOST, else the local socket. */
  dockerHost?: string | undefined;
  /** Overrides of what the engine reports; undefined: read from runtime.info(). */
  capacityOverride: { cpuMillicores?: number | undefined; memoryMiB?: number | undefined };
  /** Configured GPUs; undefined: discovered with nvidia-smi on the local socket node. */
  gpus?: GpuDevice[] | undefined;
}

/** `count` simulated nodes of one shape, compiled. */
export interface SimulatedNodesSpec {
  driver: 'simulated';
  count: number;
  idPrefix: string;
  shape: { cpuMillicores: number; memoryMiB: number; gpus?: { count: number; model: string; memoryMiB?: number | undefined } | undefined };
  labels: Record<string, string>;
  taints: Taint[];
  reserved: { cpuMillicores: number; memoryMiB: number };
  maxAgents: number;
  runMs?: number | undefined;
  failureRate?: number | undefined;
  seed?: number | undefined;
}

/** One Kubernetes cluster (one platform node), compiled. */
export interface KubernetesNodeSpec extends CommonNodeSpec {
  driver: 'kubernetes';
  /** undefined: $KUBECONFIG, ~/.kube/config, else the in-cluster service account. */
  kubeconfigPath?: string | undefined;
  /** undefined: the kubeconfig's current-context. */
  context?: string | undefined;
  /** Use the Pod's service account and ignore any kubeconfig. */
  inCluster: boolean;
  /** Binding mode: Pods carry this schedulerName and the runtime binds them itself. */
  schedulerName?: string | undefined;
  egressProxy?: { cidr: string; port: number; pods?: { namespace: string; labels: Record<string, string>; port: number } | undefined } | undefined;
  /** Overrides of what the cluster reports (sum of Ready Nodes' allocatable). */
  capacityOverride: { cpuMillicores?: number | undefined; memoryMiB?: number | undefined };
  /** GPUs the platform may hand out on this cluster; the device plugin picks the devices. */
  gpus?: GpuDevice[] | undefined;
}

export type NodePoolEntry = DockerNodeSpec | SimulatedNodesSpec | KubernetesNodeSpec;

/** Where the pool config comes from; the names are the environment variables. */
export interface NodePoolSource {
  AGENT_PLATFORM_NODES_FILE?: string | undefined;
  AGENT_PLATFORM_NODES?: string | undefined;
  /** Id of the default local node. */
  nodeName: string;
  /** Docker host of the default local node. */
  dockerHost?: string | undefined;
}

function amount(parse: (v: string | number, field: string) => number, value: string | number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parse(value, field);
  } catch (err) {
    throw new InputError(`nodes config: ${err instanceof DomainError ? err.message : String(err)}`, { field });
  }
}

function reservedOf(r: z.infer<typeof ResourceAmounts> | undefined, where: string): { cpuMillicores: number; memoryMiB: number } {
  return {
    cpuMillicores: amount(parseCpuMillicores, r?.cpu, `${where}.reserved.cpu`) ?? 0,
    memoryMiB: amount(parseMemoryMiB, r?.memory, `${where}.reserved.memory`) ?? 0,
  };
}

const taintsOf = (taints: z.infer<typeof TaintInput>[] | undefined): Taint[] =>
  (taints ?? []).map((t) => (t.value === undefined ? { key: t.key, effect: t.effect } : { key: t.key, value: t.value, effect: t.effect }));

/**
 * Id of a cluster node without a configured id: `k8s-<context>` (as the runtime names it,
 * made a valid node id: context names such as EKS ARNs hold ":" and "/"), or `k8s` when
 * the context is left to the kubeconfig, so the id never depends on a file's contents.
 */
function defaultClusterNodeId(context: string | undefined): string {
  if (context === undefined) return 'k8s';
  const cleaned = `k8s-${context}`
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .slice(0, 253)
    .replace(/[^a-z0-9]+$/, '');
  return cleaned;
}

/**
 * Parses and compiles a pool config (already decoded from YAML/JSON). Throws InputError
 * naming the entry and field of the first problems, and on duplicate node ids (see nodeIdsOf).
 */
export function compileNodePool(raw: unknown, source = 'nodes config'): NodePoolEntry[] {
  const parsed = NodesFile.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${['nodes', ...i.path.map(String)].join('.')}: ${i.message}`).join('; ');
    throw new InputError(`${source} is invalid: ${problems}`, { source });
  }
  const entries: NodePoolEntry[] = parsed.data.map((e, i): NodePoolEntry => {
    const where = `nodes.${i}`;
    if (e.driver === 'kubernetes') {
      if (e.inCluster && e.kubeconfig) throw new InputError(`${source}: ${where} sets both kubeconfig and inCluster; pick one`, { field: `${where}.inCluster` });
      return {
        driver: 'kubernetes',
        id: e.id ?? defaultClusterNodeId(e.context),
        kubeconfigPath: e.kubeconfig,
        context: e.context,
        inCluster: e.inCluster ?? false,
        schedulerName: e.schedulerName,
        egressProxy: e.egressProxy,
        labels: e.labels ?? {},
        taints: taintsOf(e.taints),
        reserved: reservedOf(e.reserved, where),
        capacityOverride: {
          cpuMillicores: amount(parseCpuMillicores, e.capacity?.cpu, `${where}.capacity.cpu`),
          memoryMiB: amount(parseMemoryMiB, e.capacity?.memory, `${where}.capacity.memory`),
        },
        maxAgents: e.maxAgents ?? DEFAULT_CLUSTER_MAX_AGENTS,
        gpus: e.gpus?.map((g) => ({ id: g.id, model: g.model, memoryMiB: g.memoryMiB })),
      };
    }
    const maxAgents = e.maxAgents ?? DEFAULT_MAX_AGENTS;
    if (e.driver === 'docker') {
      return {
        driver: 'docker',
        id: e.id,
        dockerHost: e.dockerHost,
        labels: e.labels ?? {},
        taints: taintsOf(e.taints),
        reserved: reservedOf(e.reserved, where),
        capacityOverride: {
          cpuMillicores: amount(parseCpuMillicores, e.capacity?.cpu, `${where}.capacity.cpu`),
          memoryMiB: amount(parseMemoryMiB, e.capacity?.memory, `${where}.capacity.memory`),
        },
        maxAgents,
        gpus: e.gpus?.map((g) => ({ id: g.id, model: g.model, memoryMiB: g.memoryMiB })),
      };
    }
    const cpuMillicores = amount(parseCpuMillicores, e.shape.cpu, `${where}.shape.cpu`)!;
    const memoryMiB = amount(parseMemoryMiB, e.shape.memory, `${where}.shape.memory`)!;
    if (cpuMillicores <= 0 || memoryMiB <= 0) throw new InputError(`${source}: ${where}.shape needs cpu and memory above 0`, { field: `${where}.shape` });
    return {
      driver: 'simulated',
      count: e.count,
      idPrefix: e.idPrefix ?? 'sim',
      shape: { cpuMillicores, memoryMiB, gpus: e.shape.gpus },
      labels: e.labels ?? {},
      taints: taintsOf(e.taints),
      reserved: reservedOf(e.reserved, where),
      maxAgents,
      runMs: e.runMs,
      failureRate: e.failureRate,
      seed: e.seed,
    };
  });
  const seen = new Set<string>();
  for (const id of entries.flatMap(nodeIdsOf)) {
    if (seen.has(id)) throw new InputError(`${source}: node id "${id}" appears twice`, { nodeId: id });
    seen.add(id);
  }
  return entries;
}

/**
 * The node ids an entry stands for. Simulated ids are numbered as SimulatedCluster names
 * them: `<idPrefix>-00001`, `<idPrefix>-00002`, ... (at least five digits).
 */
export function nodeIdsOf(entry: NodePoolEntry): string[] {
  if (entry.driver === 'docker' || entry.driver === 'kubernetes') return [entry.id];
  const width = Math.max(5, String(entry.count).length);
  return Array.from({ length: entry.count }, (_, n) => `${entry.idPrefix}-${String(n + 1).padStart(width, '0')}`);
}

/**
 * Reads the pool config from the file or inline JSON named in `source`, or returns the
 * default one-node pool. Setting both variables is an error (which would win is not obvious).
 */
export function loadNodePool(source: NodePoolSource): NodePoolEntry[] {
  const file = source.AGENT_PLATFORM_NODES_FILE;
  const inline = source.AGENT_PLATFORM_NODES;
  if (file && inline) throw new InputError('set AGENT_PLATFORM_NODES_FILE or AGENT_PLATFORM_NODES, not both', { field: 'AGENT_PLATFORM_NODES' });
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new InputError(`AGENT_PLATFORM_NODES_FILE: cannot read ${file}: ${(err as Error).message}`, { field: 'AGENT_PLATFORM_NODES_FILE' });
    }
    let raw: unknown;
    try {
      // YAML is a superset of JSON, so one parser reads both.
      raw = parseYaml(text);
    } catch (err) {
      throw new InputError(`AGENT_PLATFORM_NODES_FILE: ${file} is not valid YAML or JSON: ${(err as Error).message}`, { field: 'AGENT_PLATFORM_NODES_FILE' });
    }
    return compileNodePool(raw, `AGENT_PLATFORM_NODES_FILE (${file})`);
  }
  if (inline) {
    let raw: unknown;
    try {
      raw = JSON.parse(inline);
    } catch (err) {
      throw new InputError(`AGENT_PLATFORM_NODES is not valid JSON: ${(err as Error).message}`, { field: 'AGENT_PLATFORM_NODES' });
    }
    return compileNodePool(raw, 'AGENT_PLATFORM_NODES');
  }
  return [
    {
      driver: 'docker',
      id: source.nodeName,
      dockerHost: source.dockerHost,
      labels: {},
      taints: [],
      reserved: { cpuMillicores: 0, memoryMiB: 0 },
      capacityOverride: {},
      maxAgents: DEFAULT_MAX_AGENTS,
    },
  ];
}
