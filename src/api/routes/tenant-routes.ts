import { z } from 'zod';
import type { Principal } from '../../services/agent-service.js';
import type { ApiKeyRecord, QuotaLimits, Tenant } from '../../store/store.js';
import type { ApiKeyService } from '../../tenancy/api-key-service.js';
import type { TenantService } from '../../tenancy/tenant-service.js';
import type { Clock } from '../../domain/clock.js';
import type { RouteRegistry } from '../route-registry.js';
import {
  ApiKeyList,
  ApiKeyResponse,
  CreateKeyRequest,
  CreatedApiKeyResponse,
  CreateTenantRequest,
  PatchTenantRequest,
  QuotaResponse,
  TenantId,
  TenantList,
  TenantResponse,
  WhoAmI,
  type QuotaInput,
} from '../schemas/tenant-schema.js';

export interface TenantRouteDeps {
  tenants: TenantService;
  keys: ApiKeyService;
  clock: Clock;
  /** How long DELETE ?cascade=true waits for the tenant's agents to go before answering 202. */
  deleteWaitMs: number;
}

const TenantParams = z.strictObject({ id: TenantId });
const KeyParams = z.strictObject({ id: TenantId, keyId: z.string().regex(/^[a-z2-7]{16}$/, 'must be a key id as returned by the API') });
const iso = (ms: number): string => new Date(ms).toISOString();

/** API quota input (null clears) to store limits. */
export function quotaFromInput(q: QuotaInput | undefined): { [K in keyof QuotaLimits]?: number | null } {
  if (!q) return {};
  const out: { [K in keyof QuotaLimits]?: number | null } = {};
  const put = (k: keyof QuotaLimits, v: number | null | undefined): void => {
    if (v !== undefined) out[k] = v;
  };
  put('cpuMillicores', q.cpu);
  put('memoryMiB', q.memory);
  put('gpu', q.gpu);
  put('agents', q.agents);
  put('running', q.running);
  put('maxAgentCpuMillicores', q.perAgent?.cpu);
  put('maxAgentMemoryMiB', q.perAgent?.memory);
  put('maxAgentGpu', q.perAgent?.gpu);
  return out;
}

const withoutNulls = (q: { [K in keyof QuotaLimits]?: number | null }): QuotaLimits =>
  Object.fromEntries(Object.entries(q).filter(([, v]) => v !== null && v !== undefined)) as QuotaLimits;

export function toTenantResponse(t: Tenant): z.output<typeof TenantResponse> {
  const q = t.quota;
  return {
    id: t.id,
    name: t.name,
    admission: t.admission,
    quota: {
      cpuMillicores: q.cpuMillicores ?? null,
      memoryMiB: q.memoryMiB ?? null,
      gpu: q.gpu ?? null,
      agents: q.agents ?? null,
      running: q.running ?? null,
      maxAgentCpuMillicores: q.maxAgentCpuMillicores ?? null,
      maxAgentMemoryMiB: q.maxAgentMemoryMiB ?? null,
      maxAgentGpu: q.maxAgentGpu ?? null,
    },
    minIsolation: t.minIsolation ?? null,
    createdAt: iso(t.createdAt),
    updatedAt: iso(t.updatedAt),
  };
}

function toKeyResponse(k: ApiKeyRecord, now: number): z.output<typeof ApiKeyResponse> {
  return {
    id: k.id,
    tenantId: k.tenantId,
    name: k.name,
    role: k.role,
    createdAt: iso(k.createdAt),
    createdBy: k.createdBy,
    ...(k.expiresAt !== undefined ? { expiresAt: iso(k.expiresAt) } : {}),
    ...(k.revokedAt !== undefined ? { revokedAt: iso(k.revokedAt) } : {}),
    status: k.revokedAt !== undefined ? 'revoked' : k.expiresAt !== undefined && k.expiresAt <= now ? 'expired' : 'active',
  };
}

/** Tenants (platform admin), their quota view and API keys (tenant admin), and whoami. */
export function registerTenantRoutes(routes: RouteRegistry, d: TenantRouteDeps): void {
  // Another tenant's id is 404 before the body is even validated.
  const scope = (principal: Principal, params: { id: string }): Promise<unknown> => d.tenants.visible(principal, params.id);
  routes.add(
    { method: 'GET', url: '/api/v1/whoami', summary: 'The caller: subject, tenant and role', tags: ['tenants'], permission: 'agents:read', responses: { 200: WhoAmI } },
    async ({ principal }) => ({ subject: principal.subject, tenantId: principal.tenantId, role: principal.role }),
  );

  routes.add(
    { method: 'POST', url: '/api/v1/tenants', summary: 'Create a tenant (platform admin)', tags: ['tenants'], permission: 'tenants:write', body: CreateTenantRequest, responses: { 201: TenantResponse } },
    async ({ body, reply }) => {
      const tenant = await d.tenants.create({ id: body.id, name: body.name, admission: body.admission, quota: withoutNulls(quotaFromInput(body.quota)), minIsolation: body.minIsolation });
      void reply.status(201).header('location', `/api/v1/tenants/${tenant.id}`);
      return toTenantResponse(tenant);
    },
  );

  routes.add(
    { method: 'GET', url: '/api/v1/tenants', summary: 'List tenants (platform admin: all; others: their own)', tags: ['tenants'], permission: 'tenants:read', responses: { 200: TenantList } },
    async ({ principal }) => ({ items: (await d.tenants.list(principal)).map(toTenantResponse) }),
  );

  routes.add(
    { method: 'GET', url: '/api/v1/tenants/:id', summary: 'Get a tenant', tags: ['tenants'], permission: 'tenants:read', params: TenantParams, scope, responses: { 200: TenantResponse } },
    async ({ params, principal }) => toTenantResponse(await d.tenants.visible(principal, params.id)),
  );

  routes.add(
    {
      method: 'PATCH',
      url: '/api/v1/tenants/:id',
      summary: 'Change a tenant: name, admission mode, quota, minimum isolation class (platform admin); a quota field or minIsolation set to null removes it',
      tags: ['tenants'],
      permission: 'tenants:write',
      params: TenantParams,
      scope,
      body: PatchTenantRequest,
      responses: { 200: TenantResponse },
    },
    async ({ params, body, principal }) =>
      toTenantResponse(
        await d.tenants.update(principal, params.id, { name: body.name, admission: body.admission, quota: body.quota ? quotaFromInput(body.quota) : undefined, minIsolation: body.minIsolation }),
      ),
  );

  routes.add(
    {
      method: 'DELETE',
      url: '/api/v1/tenants/:id',
      summary: 'Delete a tenant (platform admin); refused (409 TENANT_HAS_AGENTS) while it has agents unless cascade=true',
      tags: ['tenants'],
      permission: 'tenants:write',
      params: TenantParams,
      scope,
      query: z.strictObject({ cascade: z.enum(['true', 'false']).optional() }),
      responses: { 200: z.object({ id: z.string(), deleted: z.literal(true) }), 202: z.object({ id: z.string(), deleted: z.literal(false), agentsRemaining: z.number() }) },
    },
    async ({ params, query, principal, reply }) => {
      const r = await d.tenants.delete(principal, params.id, query.cascade === 'true', d.deleteWaitMs);
      if (r.deleted) return { id: params.id, deleted: true as const };
      void reply.status(202);
      return { id: params.id, deleted: false as const, agentsRemaining: r.agentsRemaining };
    },
  );

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/tenants/:id/quota',
      summary: 'Quota of a tenant: limit, used and free per resource, exact at every moment',
      tags: ['tenants'],
      permission: 'quota:read',
      params: TenantParams,
      scope,
      responses: { 200: QuotaResponse },
    },
    async ({ params, principal }) => d.tenants.quota(principal, params.id),
  );

  routes.add(
    {
      method: 'POST',
      url: '/api/v1/tenants/:id/keys',
      summary: 'Create an API key; the secret is in this response only',
      tags: ['tenants'],
      permission: 'keys:write',
      params: TenantParams,
      scope,
      body: CreateKeyRequest,
      responses: { 201: CreatedApiKeyResponse },
    },
    async ({ params, body, principal, reply }) => {
      await d.tenants.visible(principal, params.id);
      const { record, key } = await d.keys.create(principal, params.id, { name: body.name, role: body.role, expiresAt: body.expiresAt ? Date.parse(body.expiresAt) : undefined });
      void reply.status(201).header('location', `/api/v1/tenants/${params.id}/keys/${record.id}`).header('cache-control', 'no-store');
      return { ...toKeyResponse(record, d.clock.now()), key };
    },
  );

  routes.add(
    { method: 'GET', url: '/api/v1/tenants/:id/keys', summary: 'List API keys (no secrets)', tags: ['tenants'], permission: 'keys:read', params: TenantParams, scope, responses: { 200: ApiKeyList } },
    async ({ params, principal }) => {
      await d.tenants.visible(principal, params.id);
      const now = d.clock.now();
      return { items: (await d.keys.list(params.id)).map((k) => toKeyResponse(k, now)) };
    },
  );

  routes.add(
    {
      method: 'DELETE',
      url: '/api/v1/tenants/:id/keys/:keyId',
      summary: 'Revoke an API key: refused (401) at once on every replica',
      tags: ['tenants'],
      permission: 'keys:write',
      params: KeyParams,
      scope,
      responses: { 200: z.object({ id: z.string(), revoked: z.literal(true) }) },
    },
    async ({ params, principal }) => {
      await d.tenants.visible(principal, params.id);
      await d.keys.revoke(params.id, params.keyId);
      return { id: params.keyId, revoked: true as const };
    },
  );
}
