import { z } from 'zod';
import { PHASES, RESTART_POLICIES, SCHEDULING_POLICIES } from '../../domain/agent.js';
import { parseCpuMillicores, parseMemoryMiB } from '../../domain/quantity.js';
import { DomainError } from '../../domain/errors.js';
import { Labels, LabelKey, LabelValue } from './common-schema.js';
import { AgentEndpointResponse, EnvValueInput, EnvValueResponse, ExposeInput, IsolationInput, NetworkPolicyInput } from './secret-schema.js';

/** Kubernetes quantity parsed with `parse`; the error names the field. */
function quantity(parse: (v: string | number, field: string) => number, example: string) {
  return z
    .union([z.string().max(32), z.number().nonnegative()])
    .transform((value, ctx) => {
      try {
        return parse(value, 'quantity');
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: err instanceof DomainError ? err.message.replace(/^quantity: /, '') : String(err) });
        return z.NEVER;
      }
    })
    .meta({ description: `Kubernetes quantity, e.g. "${example}"`, examples: [example] });
}

export const CpuQuantity = quantity(parseCpuMillicores, '100m');
export const MemoryQuantity = quantity(parseMemoryMiB, '128Mi');

export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)');

export const Toleration = z.strictObject({
  key: z.string().max(253).optional(),
  operator: z.enum(['Equal', 'Exists']).optional(),
  value: z.string().max(63).optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
});

const NodeSelectorRequirement = z.strictObject({
  key: LabelKey,
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
  values: z.array(LabelValue).max(64).optional(),
});
const NodeSelectorTerm = z.strictObject({ matchExpressions: z.array(NodeSelectorRequirement).min(1).max(32) });

/** Node affinity, as Kubernetes' requiredDuringScheduling / preferredDuringScheduling (no Gt/Lt). */
export const NodeAffinityInput = z
  .strictObject({
    required: z.array(NodeSelectorTerm).max(16).optional().meta({ description: 'The node must match at least one term (terms ORed, expressions ANDed)' }),
    preferred: z
      .array(z.strictObject({ weight: z.number().int().min(1).max(100), term: NodeSelectorTerm }))
      .max(16)
      .optional()
      .meta({ description: 'Each matching term adds its weight to the node score' }),
  })
  .meta({ id: 'NodeAffinity' });

/** Keep agents with the same labels evenly spread over the values of a node label (DoNotSchedule). */
export const TopologySpreadInput = z
  .strictObject({ maxSkew: z.number().int().min(1).max(1000), topologyKey: LabelKey })
  .meta({ id: 'TopologySpreadConstraint' });

export const ResourcesInput = z
  .strictObject({
    cpu: CpuQuantity.optional(),
    memory: MemoryQuantity.optional(),
    gpu: z.number().int().min(0).max(64).optional(),
    limits: z.strictObject({ cpu: CpuQuantity.optional(), memory: MemoryQuantity.optional() }).optional(),
  })
  .meta({ id: 'ResourcesInput' });

/** Body of POST /api/v1/agents. Unknown fields are rejected so typos do not pass silently. */
export const CreateAgentRequest = z
  .strictObject({
    name: z.string().regex(DNS1123_LABEL, 'must be a DNS-1123 label: at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit'),
    image: z
      .string()
      .min(1)
      .max(512)
      .regex(
        // Docker's reference grammar: optional registry host[:port]/, lowercase path
        // components, optional :tag and @sha256:digest. Docker refuses uppercase
        // repositories, so catch them here rather than as a failed start.
        /^(?:(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9-]+:[0-9]+|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+:[0-9]+)\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/,
        'must be an image reference like "repo/name:tag" (lowercase repository, optional registry host and @sha256 digest)',
      ),
    command: z.array(z.string().max(65536)).max(256).optional(),
    args: z.array(z.string().max(65536)).max(1024).optional(),
    env: z.record(EnvName, EnvValueInput).optional().meta({ description: 'Values are strings or {"secretRef": "<secret name>"} (resolved only into the container)' }),
    workingDir: z.string().startsWith('/', 'must be an absolute path').max(4096).optional(),
    resources: ResourcesInput.optional(),
    restartPolicy: z.enum(RESTART_POLICIES).optional().meta({ description: 'Default Never' }),
    labels: Labels.optional(),
    schedulingPolicy: z.enum(SCHEDULING_POLICIES).optional().meta({ description: 'Default balanced' }),
    priority: z.number().int().min(-1000000).max(1000000).optional(),
    nodeSelector: z.record(LabelKey, LabelValue).optional(),
    tolerations: z.array(Toleration).max(64).optional(),
    affinity: NodeAffinityInput.optional(),
    topologySpread: z.array(TopologySpreadInput).max(8).optional().meta({ description: "Spread over node label domains; agents of the tenant with the same labels count as one group" }),
    timeoutSeconds: z.number().int().min(1).max(31_536_000).optional().meta({ description: 'Stop (Failed, DeadlineExceeded) once it has run this long' }),
    isolation: IsolationInput.optional(),
    network: NetworkPolicyInput.optional(),
    expose: ExposeInput.optional(),
  })
  .meta({ id: 'CreateAgentRequest' });
export type CreateAgentRequest = z.output<typeof CreateAgentRequest>;

const Time = z.string().meta({ description: 'RFC 3339 time' });

/** Latest sampled usage of a running agent's container, beside its limits. */
export const AgentUsage = z
  .object({
    cpuCores: z.number().nullable().meta({ description: 'Average CPU between the last two samples, in cores; null until there are two' }),
    memoryWorkingSetBytes: z.number().meta({ description: "Memory in use minus inactive file cache (what the OOM killer weighs), cAdvisor's working set" }),
    memoryLimitBytes: z.number(),
    cpuLimitCores: z.number(),
    sampledAt: Time,
  })
  .meta({ id: 'AgentUsage' });

export const AgentResponse = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    name: z.string(),
    labels: z.record(z.string(), z.string()),
    spec: z.object({
      image: z.string(),
      command: z.array(z.string()),
      args: z.array(z.string()),
      env: z.record(z.string(), EnvValueResponse),
      workingDir: z.string().optional(),
      resources: z.object({
        cpu: z.string(),
        memory: z.string(),
        gpu: z.number(),
        limits: z.object({ cpu: z.string(), memory: z.string() }),
        cpuMillicores: z.number(),
        memoryMiB: z.number(),
        cpuLimitMillicores: z.number(),
        memoryLimitMiB: z.number(),
      }),
      restartPolicy: z.enum(RESTART_POLICIES),
      schedulingPolicy: z.enum(SCHEDULING_POLICIES),
      priority: z.number(),
      nodeSelector: z.record(z.string(), z.string()),
      tolerations: z.array(Toleration),
      affinity: NodeAffinityInput.optional(),
      topologySpread: z.array(TopologySpreadInput).optional(),
      timeoutSeconds: z.number().optional(),
      isolation: IsolationInput.optional(),
      network: NetworkPolicyInput,
      expose: z.array(z.object({ port: z.number() })).optional(),
    }),
    desiredState: z.enum(['running', 'stopped', 'deleted']),
    status: z.object({
      phase: z.enum(PHASES),
      reason: z.string().optional(),
      message: z.string().optional(),
      node: z.string().optional(),
      containerId: z.string().optional(),
      gpuIds: z.array(z.string()).optional().meta({ description: 'GPU devices granted on the node' }),
      exitCode: z.number().optional(),
      restarts: z.number(),
      createdAt: Time,
      startedAt: Time.optional(),
      finishedAt: Time.optional(),
      nextAttemptAt: Time.optional(),
      isolation: IsolationInput.optional().meta({ description: 'Isolation class the running container actually got' }),
      endpoints: z.array(AgentEndpointResponse).optional().meta({ description: 'Where exposed ports are reachable (127.0.0.1 of the node)' }),
    }),
    createdAt: Time,
    updatedAt: Time,
    version: z.number(),
    usage: AgentUsage.optional().meta({ description: 'Latest CPU and memory of the running container; absent when it is not running or not sampled yet' }),
  })
  .meta({ id: 'Agent' });
export type AgentResponse = z.infer<typeof AgentResponse>;

export const AgentList = z
  .object({ items: z.array(AgentResponse), nextCursor: z.string().optional() })
  .meta({ id: 'AgentList' });

export const ListAgentsQuery = z.strictObject({
  phase: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const phases = v.split(',').map((p) => p.trim());
      for (const p of phases) if (!(PHASES as readonly string[]).includes(p)) ctx.addIssue({ code: 'custom', message: `unknown phase "${p}"; one of ${PHASES.join(', ')}` });
      return phases as (typeof PHASES)[number][];
    })
    .meta({ description: 'Comma-separated phases' }),
  label: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const out: Record<string, string> = {};
      for (const pair of v.split(',')) {
        const [k, val, ...rest] = pair.split('=');
        if (!k || val === undefined || rest.length) ctx.addIssue({ code: 'custom', message: `"${pair}" is not key=value` });
        else out[k.trim()] = val.trim();
      }
      return out;
    })
    .meta({ description: 'Label selector: key=value[,key=value]' }),
  limit: z.string().regex(/^[0-9]+$/, 'must be a whole number').transform(Number).pipe(z.number().int().min(1).max(1000)).optional(),
  cursor: z.string().max(512).optional(),
});

export const LogsQuery = z.strictObject({
  tail: z.string().regex(/^[0-9]+$/, 'must be a whole number').transform(Number).optional(),
  since: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const rel = /^([0-9]+)(s|m|h)$/.exec(v);
      if (rel) return Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6 }[rel[2] as 's' | 'm' | 'h'];
      const t = Date.parse(v);
      if (Number.isNaN(t)) {
        ctx.addIssue({ code: 'custom', message: 'must be an RFC 3339 time or a duration like "10m"' });
        return z.NEVER;
      }
      return t;
    })
    .meta({ description: 'RFC 3339 time or relative duration ("30s", "10m", "2h")' }),
  follow: z.enum(['true', 'false']).optional().transform((v) => v === 'true'),
  timestamps: z.enum(['true', 'false']).optional().transform((v) => v === 'true'),
});

export const EventResponse = z
  .object({
    id: z.number(),
    objectKind: z.string(),
    objectId: z.string(),
    type: z.enum(['Normal', 'Warning']),
    reason: z.string(),
    message: z.string(),
    data: z.unknown().optional(),
    time: Time,
  })
  .meta({ id: 'Event' });
export const EventList = z.object({ items: z.array(EventResponse) }).meta({ id: 'EventList' });
