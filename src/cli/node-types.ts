/** Node JSON as GET /api/v1/nodes returns it (src/api/schemas/node-schema.ts); only what agentctl reads is typed. */
export interface NodeAmountsJson {
  cpu: string;
  memory: string;
  cpuMillicores: number;
  memoryMiB: number;
}

/** `usage` of a node: measured CPU and memory of its running agents (NodeUsage in the node schema). */
export interface NodeUsageJson {
  /** null until a measured agent has two samples. */
  cpuMillicores: number | null;
  memoryWorkingSetBytes: number;
  /** Agents measured: the caller's tenant's only, unless platform-admin. */
  agents: number;
  sampledAt: string;
}

export interface NodeJson {
  id: string;
  driver: string;
  simulated: boolean;
  labels: Record<string, string>;
  taints: { key: string; value?: string; effect: string }[];
  capacity: NodeAmountsJson & { maxAgents: number; gpus: { id: string; model: string; memoryMiB?: number }[] };
  reserved: NodeAmountsJson;
  allocatable: NodeAmountsJson & { maxAgents: number; gpus: number };
  allocated: NodeAmountsJson & { agents: number; gpus: number; gpuIds: string[] };
  free: NodeAmountsJson & { agents: number; gpus: number };
  agents: number;
  /** Absent when not measured (simulated node, nothing sampled yet). */
  usage?: NodeUsageJson;
  conditions: { type: string; status: string; reason: string; message: string; lastHeartbeatTime?: string; lastTransitionTime: string }[];
  ready: boolean;
  cordoned: boolean;
  unhealthy: boolean;
  info?: { os: string; arch: string; runtimeVersion: string; isolationClasses: string[] };
}

export interface NodeDetailJson extends NodeJson {
  agentList: { id: string; tenantId: string; name: string; phase: string }[];
}

export interface DrainResultJson {
  node: string;
  cordoned: true;
  rescheduled: number;
  remaining: number;
  errors: number;
}
