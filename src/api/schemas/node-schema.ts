import { z } from 'zod';
import { PHASES } from '../../domain/agent.js';

const Time = z.string().meta({ description: 'RFC 3339 time' });

/** cpu/memory as quantities and in base units, like agent resources. */
const Amounts = z.object({
  cpu: z.string(),
  memory: z.string(),
  cpuMillicores: z.number(),
  memoryMiB: z.number(),
});

const GpuDevice = z.object({ id: z.string(), model: z.string(), memoryMiB: z.number().optional() });

export const NodeCondition = z
  .object({
    type: z.literal('Ready'),
    status: z.enum(['True', 'False', 'Unknown']),
    reason: z.string(),
    message: z.string(),
    lastHeartbeatTime: Time.optional(),
    lastTransitionTime: Time,
  })
  .meta({ id: 'NodeCondition' });

export const NodeUsage = z
  .object({
    cpuMillicores: z
      .number()
      .int()
      .nullable()
      .meta({ description: "Sum of the measured agents' CPU rates (average between their last two samples); null until one has two samples. An agent in its first sample adds memory, not yet CPU" }),
    memoryWorkingSetBytes: z.number().int().meta({ description: "Sum of the measured agents' working sets (cAdvisor's: in use minus inactive file cache)" }),
    agents: z.number().int().meta({ description: 'Running agents with a sample in the last round (of the caller\'s tenant, unless platform-admin)' }),
    sampledAt: Time.meta({ description: 'The newest of those samples; the end of the last sampling round when there are none' }),
  })
  .meta({
    id: 'NodeUsage',
    description:
      "Measured CPU and memory of the node's running agents' containers, from the usage sampler's last round (AGENT_PLATFORM_USAGE_INTERVAL_MS); the node's own processes are not counted. Platform admins get all agents; other roles only their own tenant's, as in agentList",
  });

export const NodeResponse = z
  .object({
    id: z.string(),
    driver: z.string(),
    simulated: z.boolean().meta({ description: 'In-memory node of the simulated runtime (tests, benchmarks): its capacity is not real' }),
    labels: z.record(z.string(), z.string()),
    taints: z.array(z.object({ key: z.string(), value: z.string().optional(), effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']) })),
    capacity: Amounts.extend({ maxAgents: z.number(), gpus: z.array(GpuDevice) }),
    reserved: Amounts,
    allocatable: Amounts.extend({ maxAgents: z.number(), gpus: z.number() }).meta({ description: 'capacity - reserved' }),
    allocated: Amounts.extend({ agents: z.number(), gpus: z.number(), gpuIds: z.array(z.string()) }),
    free: Amounts.extend({ agents: z.number(), gpus: z.number() }),
    agents: z.number().meta({ description: 'Agents counted on the node' }),
    usage: NodeUsage.optional().meta({
      description: 'Absent for simulated nodes, before the first sampling round, and when running agents (in scope) are on the node but none could be measured: unknown, not zero',
    }),
    conditions: z.array(NodeCondition),
    ready: z.boolean(),
    cordoned: z.boolean(),
    unhealthy: z.boolean().meta({ description: 'Too many agents failed to start here; skipped until the cool-down ends or an uncordon' }),
    info: z
      .object({ os: z.string(), arch: z.string(), runtimeVersion: z.string(), isolationClasses: z.array(z.string()) })
      .optional()
      .meta({ description: 'What the runtime last reported; absent before its first answer' }),
  })
  .meta({ id: 'Node' });
export type NodeResponse = z.infer<typeof NodeResponse>;

export const NodeList = z.object({ items: z.array(NodeResponse) }).meta({ id: 'NodeList' });

export const NodeDetail = NodeResponse.extend({
  agentList: z
    .array(z.object({ id: z.string(), tenantId: z.string(), name: z.string(), phase: z.enum(PHASES) }))
    .meta({ description: "Live agents on the node (the caller's tenant only, unless platform-admin)" }),
}).meta({ id: 'NodeDetail' });

export const DrainResponse = z
  .object({
    node: z.string(),
    cordoned: z.literal(true),
    rescheduled: z.number().meta({ description: 'Restartable agents whose container was removed; the scheduler places them elsewhere' }),
    remaining: z.number().meta({ description: 'Agents left to finish on the node (restartPolicy Never, or being stopped)' }),
    errors: z.number().meta({ description: 'Agents that could not be moved (see the platform log); drain again to retry' }),
  })
  .meta({ id: 'DrainResult' });

export const NodeIdParams = z.strictObject({
  id: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be a node id'),
});
