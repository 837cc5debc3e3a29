/** A machine (or simulated machine) agents run on. Integers in base units. */

export interface Taint {
  key: string;
  value?: string | undefined;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

export interface GpuDevice {
  /** Device id as the runtime names it (index or UUID). */
  id: string;
  model: string;
  memoryMiB?: number | undefined;
}

export interface NodeCapacity {
  cpuMillicores: number;
  memoryMiB: number;
  /** Maximum number of agents on the node. */
  maxAgents: number;
  gpus: GpuDevice[];
}

export interface NodeAllocation {
  cpuMillicores: number;
  memoryMiB: number;
  agents: number;
  /** GPU device ids in use. */
  gpuIds: string[];
}

export type NodeConditionType = 'Ready' | 'NotReady' | 'Unhealthy';

export interface Node {
  id: string;
  /** "docker" | "kubernetes" | "simulated". */
  driver: string;
  /** True for in-memory nodes of the simulated runtime: never real capacity. */
  simulated: boolean;
  labels: Record<string, string>;
  taints: Taint[];
  /** Total capacity as read from the runtime. */
  capacity: NodeCapacity;
  /** Held back for the system; schedulable = capacity - reserved. */
  reserved: { cpuMillicores: number; memoryMiB: number };
  allocated: NodeAllocation;
  ready: boolean;
  cordoned: boolean;
  /** Marked when the node keeps failing agents; skipped until it recovers. */
  unhealthy: boolean;
  lastHeartbeatAt?: number | undefined;
}
