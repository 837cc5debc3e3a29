import { z } from 'zod';
import { InputError } from '../../domain/errors.js';
import type { Clock } from '../../domain/clock.js';
import type { Store } from '../../store/store.js';
import type { RateCard } from '../../tenancy/rate-card.js';
import type { TenantService } from '../../tenancy/tenant-service.js';
import { buildUsageReport, microsToString, quantitiesOf, usageReportCsv, type UsageAmounts } from '../../tenancy/usage-ledger.js';
import type { RouteRegistry } from '../route-registry.js';
import { LabelKey } from '../schemas/common-schema.js';
import { TenantId } from '../schemas/tenant-schema.js';

export interface UsageRouteDeps {
  tenants: TenantService;
  store: Store;
  rateCard: RateCard;
  clock: Clock;
  /** The meter's longest step (AGENT_PLATFORM_USAGE_MAX_STEP_MS), applied to open intervals too. */
  maxStepMs: number;
}

const Time = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined) return undefined;
    const t = /^\d{4}-\d{2}-\d{2}$/.test(v) ? Date.parse(`${v}T00:00:00Z`) : Date.parse(v);
    if (Number.isNaN(t)) {
      ctx.addIssue({ code: 'custom', message: 'must be an RFC 3339 time or a date (YYYY-MM-DD, UTC)' });
      return z.NEVER;
    }
    return t;
  });

const UsageQuery = z.strictObject({
  from: Time.meta({ description: 'Start (inclusive); RFC 3339 or YYYY-MM-DD. Default: start of the current UTC month' }),
  to: Time.meta({ description: 'End (exclusive). Default: now' }),
  groupBy: z.enum(['agent', 'day', 'label']).default('agent'),
  label: LabelKey.optional().meta({ description: 'Label key to group by (groupBy=label)' }),
});

const Quantities = {
  runSeconds: z.number(),
  cpuCoreSeconds: z.number().meta({ description: 'Allocated CPU (requests) while Running' }),
  memoryGiBSeconds: z.number(),
  gpuSeconds: z.number(),
  usedCpuSeconds: z.number().nullable().meta({ description: 'CPU time used, from the runtime counters (sampled intervals only; the last piece of a run has none); null when no interval had a counter (e.g. simulated nodes)' }),
  cost: z.string().meta({ description: 'Decimal with 6 places' }),
  costMicros: z.number().int().meta({ description: 'Cost in millionths of the currency; rows add up to the total exactly' }),
};

const UsageResponse = z
  .object({
    tenantId: z.string(),
    from: z.string(),
    to: z.string(),
    groupBy: z.enum(['agent', 'day', 'label']),
    label: z.string().optional(),
    currency: z.string(),
    rates: z.object({ cpuCoreHour: z.string(), memoryGiBHour: z.string(), gpuHour: z.string() }),
    rows: z.array(z.object({ key: z.string(), name: z.string().optional(), ...Quantities })),
    total: z.object(Quantities),
  })
  .meta({ id: 'TenantUsage' });

const figures = (a: UsageAmounts, costMicros: bigint): z.output<z.ZodObject<typeof Quantities>> => ({ ...quantitiesOf(a), cost: microsToString(costMicros), costMicros: Number(costMicros) });

/** GET /api/v1/tenants/{id}/usage: the usage ledger, grouped and priced; CSV with Accept: text/csv. */
export function registerUsageRoutes(routes: RouteRegistry, d: UsageRouteDeps): void {
  routes.add(
    {
      method: 'GET',
      url: '/api/v1/tenants/:id/usage',
      summary: 'Usage and cost of a tenant (Running time only), grouped by agent, day or label; CSV with Accept: text/csv',
      tags: ['tenants'],
      permission: 'usage:read',
      params: z.strictObject({ id: TenantId }),
      scope: (principal, params) => d.tenants.visible(principal, params.id),
      query: UsageQuery,
      responses: { 200: UsageResponse },
    },
    async ({ params, query, principal, request, reply }) => {
      await d.tenants.visible(principal, params.id);
      const now = d.clock.now();
      const month = new Date(now);
      const fromMs = query.from ?? Date.UTC(month.getUTCFullYear(), month.getUTCMonth(), 1);
      const toMs = query.to ?? now;
      if (toMs <= fromMs) throw new InputError('query.to must be after query.from', { field: 'query.to' });
      if (query.groupBy === 'label' && !query.label) throw new InputError('groupBy=label needs label=<key>', { field: 'query.label' });
      const rates = d.rateCard.ratesFor(params.id);
      // Open intervals too: what Running agents used since the meter last closed their interval.
      const records = await d.store.listUsage({ tenantId: params.id, fromMs, toMs, openUntilMs: now, maxOpenStepMs: d.maxStepMs });
      const report = buildUsageReport(records, { fromMs, toMs, groupBy: query.groupBy, label: query.label, rates });
      if (/\btext\/csv\b/.test(String(request.headers.accept ?? ''))) {
        void reply.header('content-type', 'text/csv; charset=utf-8');
        return usageReportCsv(report);
      }
      return {
        tenantId: params.id,
        from: new Date(fromMs).toISOString(),
        to: new Date(toMs).toISOString(),
        groupBy: query.groupBy,
        ...(query.label ? { label: query.label } : {}),
        currency: report.currency,
        rates: { cpuCoreHour: microsToString(rates.cpuCoreHourMicros), memoryGiBHour: microsToString(rates.memoryGiBHourMicros), gpuHour: microsToString(rates.gpuHourMicros) },
        rows: report.rows.map((r) => ({ key: r.key, ...(r.name !== undefined ? { name: r.name } : {}), ...figures(r.amounts, r.costMicros) })),
        total: figures(report.total.amounts, report.total.costMicros),
      };
    },
  );
}
