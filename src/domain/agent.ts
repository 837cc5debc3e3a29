import type { NodeAffinity, TopologySpreadConstraint } from './affinity.js';

/**
 * The Agent aggregate: what the user asked for (spec + desired state) and what the
 * platform observed (status). Integers in base units throughout: millicores, MiB.
 */

export const PHASES = ['Pending', 'Starting', 'Running', 'Succeeded', 'Failed', 'Stopping', 'Stopped', 'Deleting'] as const;
export type Phase = (typeof PHASES)[number];

export const RESTART_POLICIES = ['Never', 'OnFailure', 'Always'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];

export const SCHEDULING_POLICIES = ['spread', 'pack', 'balanced'] as const;
export type SchedulingPolicy = (typeof SCHEDULING_POLICIES)[number];

/** What the user wants: keep it running, keep it stopped, or make it go away. */
export type DesiredState = 'running' | 'stopped' | 'deleted';

export interface Resources {
  /** CPU request in millicores. */
  cpuMillicores: number;
  /** Memory request in MiB. */
  memoryMiB: number;
  /** Whole GPU devices. */
  gpu: number;
  /** CPU limit in millicores; defaults to the request. */
  cpuLimitMillicores: number;
  /** Memory limit in MiB; defaults to the request. */
  memoryLimitMiB: number;
}

/** Sandboxes an agent can run in, weakest first: runc shares the host kernel, gvisor does not. */
export const ISOLATION_CLASSES = ['runc', 'gvisor'] as const;
export type IsolationClass = (typeof ISOLATION_CLASSES)[number];

/**
 * Where an agent may connect. `none`: loopback only. `allowlist`: only the listed
 * destinations, through the platform's audited egress proxy (rules as src/egress/allowlist.ts
 * parses them). `open`: unrestricted (platform admins only).
 */
export type NetworkPolicy = { mode: 'none' } | { mode: 'allowlist'; allow: string[] } | { mode: 'open' };

/** A container port the platform makes reachable on the node's loopback address. */
export interface ExposedPort {
  port: number;
}

/** Where an exposed port can be reached (on the node running the agent). */
export interface AgentEndpoint {
  port: number;
  hostIp: string;
  hostPort: number;
}

/** An environment value taken from a tenant secret when the container is built. */
export interface SecretEnvRef {
  /** Secret name in the agent's tenant. */
  name: string;
}

export interface Toleration {
  key?: string | undefined;
  operator?: 'Equal' | 'Exists' | undefined;
  value?: string | undefined;
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute' | undefined;
}

export interface AgentSpec {
  image: string;
  command: string[];
  args: string[];
  /** Plain values only here; secret references are resolved by the secrets feature. */
  env: Record<string, string>;
  workingDir?: string | undefined;
  resources: Resources;
  restartPolicy: RestartPolicy;
  schedulingPolicy: SchedulingPolicy;
  /** Higher first when several agents wait for room. */
  priority: number;
  nodeSelector: Record<string, string>;
  tolerations: Toleration[];
  /** Required and preferred node affinity; absent means any node. */
  affinity?: NodeAffinity | undefined;
  /** Spread constraints over node label domains; see TopologySpreadConstraint. */
  topologySpread?: TopologySpreadConstraint[] | undefined;
  /** Stop the agent once it has run this long (Failed, reason DeadlineExceeded). */
  timeoutSeconds?: number | undefined;
  /** Isolation class asked for; absent: runc (a configured minimum may raise it). */
  isolation?: IsolationClass | undefined;
  /** Egress policy; absent: `{mode: "none"}`. */
  network?: NetworkPolicy | undefined;
  /** Container ports published on the node's 127.0.0.1. */
  expose?: ExposedPort[] | undefined;
  /** Environment variables whose values are tenant secrets (never stored in plaintext here). */
  secretEnv?: Record<string, SecretEnvRef> | undefined;
}

export interface AgentStatus {
  phase: Phase;
  /** Machine-readable, CamelCase (e.g. OOMKilled, CrashLoopBackOff, ImageNotFound). */
  reason?: string | undefined;
  message?: string | undefined;
  node?: string | undefined;
  containerId?: string | undefined;
  /** GPU device ids granted on the node. */
  gpuIds?: string[] | undefined;
  exitCode?: number | undefined;
  restarts: number;
  /** When the current phase was entered (ms epoch); deadlines count from here. */
  phaseSince: number;
  startedAt?: number | undefined;
  finishedAt?: number | undefined;
  /** While in backoff: when the next start may happen (ms epoch). */
  nextAttemptAt?: number | undefined;
  /** Isolation class the running container actually got. */
  isolation?: IsolationClass | undefined;
  /** Where the exposed ports of the running container are reachable. */
  endpoints?: AgentEndpoint[] | undefined;
}

export interface Agent {
  id: string;
  tenantId: string;
  name: string;
  labels: Record<string, string>;
  spec: AgentSpec;
  desired: DesiredState;
  status: AgentStatus;
  createdAt: number;
  updatedAt: number;
  /** Optimistic concurrency: every update must name the version it read. */
  version: number;
}

export const TERMINAL_PHASES: ReadonlySet<Phase> = new Set(['Succeeded', 'Failed', 'Stopped']);
/** Phases that must not last forever; past their deadline the agent fails. */
export const TRANSITIONAL_PHASES: ReadonlySet<Phase> = new Set(['Starting', 'Stopping', 'Deleting']);

export const isTerminal = (phase: Phase): boolean => TERMINAL_PHASES.has(phase);
