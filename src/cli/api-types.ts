/**
 * The HTTP contract as agentctl reads it. The CLI is a client like any other, so it keeps
 * its own copy of the wire types instead of importing server schemas: a server change
 * that breaks old clients should be noticed here, not silently compiled in.
 */

export type PhaseName = 'Pending' | 'Starting' | 'Running' | 'Succeeded' | 'Failed' | 'Stopping' | 'Stopped' | 'Deleting';

export const PHASE_NAMES: readonly PhaseName[] = ['Pending', 'Starting', 'Running', 'Succeeded', 'Failed', 'Stopping', 'Stopped', 'Deleting'];

/** Agent as returned by GET /api/v1/agents/{id}. Times are RFC 3339 strings. */
export interface AgentJson {
  id: string;
  tenantId: string;
  name: string;
  labels: Record<string, string>;
  spec: {
    image: string;
    command: string[];
    args: string[];
    env: Record<string, string>;
    workingDir?: string;
    resources: {
      cpu: string;
      memory: string;
      gpu: number;
      limits: { cpu: string; memory: string };
      cpuMillicores: number;
      memoryMiB: number;
      cpuLimitMillicores: number;
      memoryLimitMiB: number;
    };
    restartPolicy: string;
    schedulingPolicy: string;
    priority: number;
    nodeSelector: Record<string, string>;
    tolerations: Array<{ key?: string; operator?: string; value?: string; effect?: string }>;
    timeoutSeconds?: number;
  };
  desiredState: 'running' | 'stopped' | 'deleted';
  status: {
    phase: PhaseName;
    reason?: string;
    message?: string;
    node?: string;
    containerId?: string;
    exitCode?: number;
    restarts: number;
    createdAt: string;
    startedAt?: string;
    finishedAt?: string;
    nextAttemptAt?: string;
  };
  createdAt: string;
  updatedAt: string;
  version: number;
}

/** One page of GET /api/v1/agents. */
export interface AgentListJson {
  items: AgentJson[];
  /** Present when more items follow; pass it back as `cursor`. */
  nextCursor?: string;
}

/** One item of GET /api/v1/agents/{id}/events. */
export interface EventJson {
  id: number | string;
  objectKind: string;
  objectId: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  data?: unknown;
  time: string;
}

/** Body of POST /api/v1/agents; the server validates it, the CLI only checks the basics. */
export interface CreateAgentBody {
  name: string;
  image: string;
  [field: string]: unknown;
}

/** The one error shape every endpoint returns. */
export interface ErrorBodyJson {
  error: { code: string; message: string; details?: unknown; requestId?: string };
}
