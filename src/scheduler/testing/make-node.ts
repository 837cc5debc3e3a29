import type { Node } from '../../domain/node.js';
import type { SchedulableSpec } from '../scheduling-snapshot.js';

/** Test fixture: a ready, empty 4-core / 8 GiB node; override any field. */
export function makeNode(id: string, overrides: Partial<Omit<Node, 'capacity' | 'allocated' | 'reserved'>> & {
  capacity?: Partial<Node['capacity']>;
  allocated?: Partial<Node['allocated']>;
  reserved?: Partial<Node['reserved']>;
} = {}): Node {
  const { capacity, allocated, reserved, ...rest } = overrides;
  return {
    id,
    driver: 'simulated',
    simulated: true,
    labels: {},
    taints: [],
    ready: true,
    cordoned: false,
    unhealthy: false,
    ...rest,
    capacity: { cpuMillicores: 4000, memoryMiB: 8192, maxAgents: 110, gpus: [], ...capacity },
    allocated: { cpuMillicores: 0, memoryMiB: 0, agents: 0, gpuIds: [], ...allocated },
    reserved: { cpuMillicores: 0, memoryMiB: 0, ...reserved },
  };
}

/** Test fixture: a spec requesting 500m / 512 MiB with the spread policy; override any field. */
export function makeSpec(overrides: Partial<Omit<SchedulableSpec, 'resources'>> & { resources?: Partial<SchedulableSpec['resources']> } = {}): SchedulableSpec {
  const { resources, ...rest } = overrides;
  return {
    schedulingPolicy: 'spread',
    nodeSelector: {},
    tolerations: [],
    ...rest,
    resources: { cpuMillicores: 500, memoryMiB: 512, gpu: 0, ...resources },
  };
}
