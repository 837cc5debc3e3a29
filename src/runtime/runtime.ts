/**
 * A place agents run: one Docker host, a Kubernetes cluster, or simulated nodes.
 * Adapters: docker (dockerode), kubernetes, simulated. No driver type crosses this
 * interface. Every adapter passes test/conformance/runtime-conformance.ts.
 *
 * Containers are named deterministically from the agent id (`containerName`), so a
 * create that is retried after a crash finds the existing container instead of
 * making a second one; and labelled with the agent id, so after a restart of the
 * control plane `list()` finds every container the platform owns.
 */

import type { GpuDevice } from '../domain/node.js';
import type { NodeAffinity } from '../domain/affinity.js';
import type { Toleration } from '../domain/agent.js';

/**
 * Label keys starting with this belong to the platform: the API refuses them in an agent's
 * labels, and runtimes drop any that reach them, so a user label can never say which agent,
 * tenant or installation a container belongs to, nor which egress policy selects it.
 */
export const RESERVED_LABEL_PREFIX = 'io.agent-platform.';
export const AGENT_ID_LABEL = 'io.agent-platform.agent-id';
export const TENANT_LABEL = 'io.agent-platform.tenant';
export const MANAGED_LABEL = 'io.agent-platform.managed';
/**
 * Which platform installation owns the container (one id per store, shared by HA
 * replicas). Several platforms on one Docker host (a dev and a test instance, parallel
 * test suites) then never sweep each other's containers as orphans.
 */
export const INSTANCE_LABEL = 'io.agent-platform.instance';
/**
 * The network mode a Docker container was created for. A mode changed while the agent was
 * stopped needs a new container (Docker cannot move a container out of network "none"), so
 * the controller compares it with the spec before starting an existing container again.
 */
export const NETWORK_MODE_LABEL = 'io.agent-platform.network-mode';

export interface ContainerSpec {
  agentId: string;
  tenantId: string;
  name: string;
  image: string;
  command: string[];
  args: string[];
  env: Record<string, string>;
  workingDir?: string | undefined;
  /** CPU limit in millicores (becomes NanoCpus / CFS quota). */
  cpuLimitMillicores: number;
  /** CPU request in millicores (becomes cpu shares). */
  cpuRequestMillicores: number;
  memoryLimitMiB: number;
  pidsLimit: number;
  /** Size cap of the tmpfs at /tmp. */
  tmpSizeMiB: number;
  /** Size cap of the writable /data (tmpfs on Docker). */
  dataSizeMiB: number;
  /** GPU device ids granted on this node (empty: none). */
  gpuDeviceIds: string[];
  labels: Record<string, string>;
  /**
   * Isolation class: "gvisor" asks for the gVisor sandbox (Kubernetes: RuntimeClass
   * "gvisor"). Runtimes that do not read it use runc.
   * @default "runc"
   */
  runtimeClass?: 'runc' | 'gvisor' | undefined;
  /** Wall-clock limit of one run in seconds (Kubernetes: activeDeadlineSeconds). */
  timeoutSeconds?: number | undefined;
  /**
   * Network to attach the container to (Docker: a network name, e.g. the platform's
   * internal egress network, or "bridge" for open egress). Undefined: no network at all,
   * loopback only.
   * @default undefined
   */
  networkName?: string | undefined;
  /**
   * The agent's egress mode (its `spec.network.mode`), for runtimes that enforce egress
   * themselves: Kubernetes turns it into the Pod's egress label, which the namespace's
   * NetworkPolicies select. Docker ignores it (`networkName` carries the decision there).
   * @default "none"
   */
  egress?: 'none' | 'allowlist' | 'open' | undefined;
  /**
   * Placement hints for runtimes that place containers themselves (Kubernetes passes
   * them to kube-scheduler); single-node runtimes ignore them.
   */
  placement?: ContainerPlacement | undefined;
}

/** Node constraints, with Kubernetes' meaning; see src/domain/affinity.ts. */
export interface ContainerPlacement {
  nodeSelector?: Record<string, string> | undefined;
  tolerations?: Toleration[] | undefined;
  affinity?: NodeAffinity | undefined;
}

export type ContainerState = 'created' | 'running' | 'exited' | 'dead' | 'paused' | 'restarting' | 'removing';

export interface ObservedContainer {
  containerId: string;
  /** From the agent-id label. */
  agentId: string;
  state: ContainerState;
  exitCode?: number | undefined;
  oomKilled: boolean;
  /** Error text the runtime reported for the last start, if any. */
  error?: string | undefined;
  startedAt?: number | undefined;
  finishedAt?: number | undefined;
  /**
   * The network mode the container was created for, where the runtime records it (Docker:
   * NETWORK_MODE_LABEL). Undefined: not recorded (older containers, runtimes that rebuild
   * the container from the current spec on every start, such as Kubernetes).
   */
  networkMode?: 'none' | 'allowlist' | 'open' | undefined;
}

export interface RuntimeEvent {
  /** Normalised action: the container started, ended, was OOM-killed or removed. */
  action: 'start' | 'die' | 'oom' | 'destroy' | 'create' | 'stop';
  containerId: string;
  agentId: string;
  time: number;
}

export interface NodeInfo {
  /** CPUs the node has, in millicores. */
  cpuMillicores: number;
  memoryMiB: number;
  os: string;
  arch: string;
  runtimeVersion: string;
  /** Isolation classes this node offers (e.g. ["runc", "gvisor"]). */
  isolationClasses: string[];
  /**
   * GPUs the runtime itself reports, when it knows them (a Kubernetes cluster: one slot per
   * `nvidia.com/gpu` its usable Nodes offer). Configured `gpus` of the node entry win.
   * @default unknown: configured or discovered GPUs only
   */
  gpus?: GpuDevice[] | undefined;
}

export interface LogOptions {
  tail?: number | undefined;
  /** Only lines at or after this time (ms epoch). */
  sinceMs?: number | undefined;
  follow?: boolean | undefined;
}

export interface LogLine {
  stream: 'stdout' | 'stderr';
  /** ms epoch, from the runtime's timestamps. */
  time: number;
  text: string;
}

/** Thrown by create/start when the image is not present and cannot be pulled. */
export class ImageNotFoundError extends Error {
  constructor(readonly image: string, detail?: string) {
    super(`image "${image}" was not found on the node${detail ? `: ${detail}` : ''}; build or pull it first`);
    this.name = 'ImageNotFoundError';
  }
}

export interface Runtime {
  /** "docker" | "kubernetes" | "simulated". */
  readonly driver: string;
  /** The node this runtime drives. */
  readonly nodeId: string;
  /**
   * True only for the simulated adapter (in-memory nodes for tests and benchmarks):
   * nothing really runs there, so its capacity must never be mistaken for real.
   * @default undefined (a real runtime)
   */
  readonly simulated?: boolean;

  /** Resolves when the runtime answers; throws otherwise. */
  ping(signal?: AbortSignal): Promise<void>;
  info(signal?: AbortSignal): Promise<NodeInfo>;

  /**
   * Creates (does not start) the container for an agent. Idempotent: if a container
   * with the agent's deterministic name exists, returns its id. Throws
   * ImageNotFoundError when the image is missing.
   */
  create(spec: ContainerSpec, signal?: AbortSignal): Promise<string>;
  /** Starts a created or exited container. Starting a running one is a no-op. */
  start(containerId: string, signal?: AbortSignal): Promise<void>;
  /** SIGTERM, then SIGKILL after graceMs. Stopping a stopped one is a no-op. */
  stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void>;
  /** Force-removes. Removing an absent container is a no-op. */
  remove(containerId: string, signal?: AbortSignal): Promise<void>;
  /**
   * undefined when the container does not exist. Like start/stop/remove, accepts the
   * container id or its deterministic `containerName(agentId)`; the controller uses the
   * name, which cannot go stale.
   */
  inspect(containerId: string, signal?: AbortSignal): Promise<ObservedContainer | undefined>;
  /** Every container this platform manages on the node, running or not. */
  list(signal?: AbortSignal): Promise<ObservedContainer[]>;
  /**
   * Calls onEvent for container events until the signal aborts. Reconnects on its
   * own after errors; events missed while disconnected are covered by the
   * reconciler's periodic resync.
   */
  watch(onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): void;
  logs(containerId: string, options: LogOptions, signal?: AbortSignal): AsyncIterable<LogLine>;

  close(): Promise<void>;
}

/** Deterministic container name for an agent, so retried creates cannot duplicate. */
export const containerName = (agentId: string): string => `ap-${agentId}`;
