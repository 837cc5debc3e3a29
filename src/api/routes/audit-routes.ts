import { z } from 'zod';
import type { AuditLog } from '../../tenancy/audit-log.js';
import type { RouteRegistry } from '../route-registry.js';
import { QueryInt } from '../schemas/common-schema.js';
import { TenantId } from '../schemas/tenant-schema.js';

const AuditQuery = z.strictObject({
  tenant: TenantId.optional().meta({ description: 'Platform admins: only this tenant. Others always see their own tenant only' }),
  since: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const t = Date.parse(v);
      if (Number.isNaN(t)) {
        ctx.addIssue({ code: 'custom', message: 'must be an RFC 3339 time' });
        return z.NEVER;
      }
      return t;
    }),
  before: QueryInt(1, Number.MAX_SAFE_INTEGER).optional().meta({ description: 'Only records with a smaller id (next page: the last id seen)' }),
  limit: QueryInt(1, 1000).optional(),
});

const AuditEntry = z
  .object({
    id: z.number(),
    time: z.string(),
    requestId: z.string(),
    subject: z.string().meta({ description: '"admin" (bootstrap token), "key:<id>", or "anonymous"' }),
    role: z.string(),
    tenantId: z.string(),
    method: z.string(),
    route: z.string(),
    targetId: z.string().optional(),
    status: z.number(),
  })
  .meta({ id: 'AuditEntry' });

/** GET /api/v1/audit: mutating requests, newest first. */
export function registerAuditRoutes(routes: RouteRegistry, d: { audit: AuditLog }): void {
  routes.add(
    {
      method: 'GET',
      url: '/api/v1/audit',
      summary: 'Audit log of mutating requests, newest first (platform admin: every tenant; tenant admin: its own)',
      tags: ['audit'],
      permission: 'audit:read',
      query: AuditQuery,
      responses: { 200: z.object({ items: z.array(AuditEntry) }).meta({ id: 'AuditList' }) },
    },
    async ({ query, principal }) => {
      const items = await d.audit.list(principal, { tenantId: query.tenant, sinceMs: query.since, beforeId: query.before, limit: query.limit ?? 100 });
      return { items: items.map((a) => ({ ...a, id: a.id ?? 0, time: new Date(a.time).toISOString() })) };
    },
  );
}
