import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { UnauthenticatedError } from '../../domain/errors.js';
import type { PlatformMetrics } from '../../metrics/platform-metrics.js';
import type { UsageSampler } from '../../metrics/usage-sampler.js';
import type { AgentService } from '../../services/agent-service.js';
import type { RouteRegistry } from '../route-registry.js';
import { Id } from '../schemas/common-schema.js';

export interface MetricsRouteDeps {
  metrics: PlatformMetrics;
  sampler: UsageSampler;
  agents: AgentService;
  /**
   * Bearer token Prometheus must send to GET /metrics; unset leaves /metrics open, like
   * most exporters (it shows agent ids, names and tenant ids, no secrets).
   */
  metricsToken?: string | undefined;
}

const MAX_RANGE_MS = 24 * 3600_000;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000 } as const;

const RangeQuery = z.strictObject({
  range: z
    .string()
    .regex(/^[0-9]{1,6}(s|m|h)$/, 'must be a duration like "30s", "15m" or "2h"')
    .optional()
    .transform((v) => {
      if (v === undefined) return 15 * 60_000;
      return Number(v.slice(0, -1)) * UNIT_MS[v.at(-1) as keyof typeof UNIT_MS];
    })
    .pipe(z.number().int().min(1_000, 'must be at least 1s').max(MAX_RANGE_MS, 'must be at most 24h'))
    .meta({ description: 'How far back, e.g. "15m" (default), "30s", "2h"; at most 24h. History older than the retention is gone.' }),
});

const UsagePointResponse = z
  .object({
    time: z.string().meta({ description: 'RFC 3339 time of the sample' }),
    cpuCores: z.number().nullable().meta({ description: 'Average CPU since the previous sample, in cores; null for a container’s first sample' }),
    memoryWorkingSetBytes: z.number(),
    memoryUsageBytes: z.number(),
  })
  .meta({ id: 'UsagePoint' });

const AgentMetricsResponse = z
  .object({
    agentId: z.string(),
    intervalMs: z.number().meta({ description: 'Sampling interval' }),
    retentionMs: z.number().meta({ description: 'How long points are kept (in memory of the serving replica)' }),
    points: z.array(UsagePointResponse),
  })
  .meta({ id: 'AgentMetrics' });

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/** GET /metrics (Prometheus exposition) and GET /api/v1/agents/{id}/metrics (usage history). */
export function registerMetricsRoutes(routes: RouteRegistry, d: MetricsRouteDeps): void {
  const tokenHash = d.metricsToken ? sha256(d.metricsToken) : undefined;
  routes.add(
    {
      method: 'GET',
      url: '/metrics',
      summary: 'Prometheus metrics (text format). No authentication unless AGENT_PLATFORM_METRICS_TOKEN is set; then a bearer token',
      tags: ['metrics'],
      auth: false,
      responses: { 200: { description: 'Prometheus text exposition format 0.0.4', contentType: 'text/plain' } },
    },
    async ({ request, reply }) => {
      if (tokenHash) {
        const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
        if (!m || !timingSafeEqual(sha256(m[1]!), tokenHash)) throw new UnauthenticatedError('GET /metrics needs "Authorization: Bearer <AGENT_PLATFORM_METRICS_TOKEN>"');
      }
      const body = await d.metrics.metrics();
      void reply.header('content-type', d.metrics.contentType);
      return body;
    },
  );

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/agents/:id/metrics',
      summary: 'CPU and memory history of an agent, sampled from its container (kept in memory for the retention period)',
      tags: ['agents'],
      permission: 'agents:read',
      params: z.strictObject({ id: Id }),
      query: RangeQuery,
      responses: { 200: AgentMetricsResponse },
    },
    async ({ params, query, principal }) => {
      const agent = await d.agents.get(principal, params.id);
      const sinceMs = Date.now() - query.range;
      return {
        agentId: agent.id,
        intervalMs: d.sampler.intervalMs,
        retentionMs: d.sampler.retentionMs,
        points: d.sampler.history(agent.id, sinceMs).map((p) => ({
          time: new Date(p.timestampMs).toISOString(),
          cpuCores: p.cpuCores,
          memoryWorkingSetBytes: p.memoryWorkingSetBytes,
          memoryUsageBytes: p.memoryUsageBytes,
        })),
      };
    },
  );
}
