import type { Resources } from '../domain/agent.js';
import { ForbiddenError } from '../domain/errors.js';
import { formatCpu, formatMemory } from '../domain/quantity.js';
import type { QuotaLimits, QuotaUsed } from '../store/store.js';

/** Reason on a Pending agent waiting for quota (admission "queue"); the controller leaves it alone. */
export const QUOTA_EXCEEDED_REASON = 'QuotaExceeded';

/** The quota resources a request can exceed, as named in QUOTA_EXCEEDED details. */
export type QuotaResource = 'cpu' | 'memory' | 'gpu' | 'agents' | 'running' | 'perAgent.cpu' | 'perAgent.memory' | 'perAgent.gpu';

/** What one agent asks of its tenant's quota. */
export interface QuotaRequest {
  cpuMillicores: number;
  memoryMiB: number;
  gpu: number;
  /** 1 for a new record (create), 0 when the record exists already (start, queue admission). */
  agents: number;
}

export interface QuotaExcess {
  resource: QuotaResource;
  used: number;
  requested: number;
  limit: number;
}

export const ZERO_USED: QuotaUsed = Object.freeze({ cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 0, running: 0 });

export function quotaRequestOf(resources: Resources, newRecord: boolean): QuotaRequest {
  return { cpuMillicores: resources.cpuMillicores, memoryMiB: resources.memoryMiB, gpu: resources.gpu, agents: newRecord ? 1 : 0 };
}

/**
 * The first limit `request` would exceed on top of `used`, or undefined when it fits.
 * Per-agent maximums first (they can never fit, queueing does not help), then the record
 * count, then the totals of live agents. Pure: the store calls it with the row it locked.
 */
export function findExcess(limits: QuotaLimits, used: QuotaUsed, request: QuotaRequest): QuotaExcess | undefined {
  const perAgent: [QuotaResource, number | undefined, number][] = [
    ['perAgent.cpu', limits.maxAgentCpuMillicores, request.cpuMillicores],
    ['perAgent.memory', limits.maxAgentMemoryMiB, request.memoryMiB],
    ['perAgent.gpu', limits.maxAgentGpu, request.gpu],
  ];
  for (const [resource, limit, requested] of perAgent) {
    if (limit !== undefined && requested > limit) return { resource, used: 0, requested, limit };
  }
  const totals: [QuotaResource, number | undefined, number, number][] = [
    ['agents', limits.agents, used.agents, request.agents],
    ['running', limits.running, used.running, 1],
    ['cpu', limits.cpuMillicores, used.cpuMillicores, request.cpuMillicores],
    ['memory', limits.memoryMiB, used.memoryMiB, request.memoryMiB],
    ['gpu', limits.gpu, used.gpu, request.gpu],
  ];
  for (const [resource, limit, u, requested] of totals) {
    if (limit !== undefined && requested > 0 && u + requested > limit) return { resource, used: u, requested, limit };
  }
  return undefined;
}

/** True when the excess can go away as other agents finish (queueing makes sense). */
export const isQueueable = (excess: QuotaExcess): boolean => !excess.resource.startsWith('perAgent.') && excess.resource !== 'agents';

/** `used` after taking (sign 1) or releasing (sign -1) an agent's live resources. */
export function applyLive(used: QuotaUsed, request: Omit<QuotaRequest, 'agents'>, sign: 1 | -1): QuotaUsed {
  return {
    ...used,
    cpuMillicores: used.cpuMillicores + sign * request.cpuMillicores,
    memoryMiB: used.memoryMiB + sign * request.memoryMiB,
    gpu: used.gpu + sign * request.gpu,
    running: used.running + sign,
  };
}

const formatAmount = (resource: QuotaResource, n: number): string =>
  resource.endsWith('cpu') ? formatCpu(n) : resource.endsWith('memory') ? formatMemory(n) : String(n);

/** Human text: "quota exceeded for memory: used 900Mi + requested 256Mi > limit 1Gi". */
export function excessMessage(e: QuotaExcess): string {
  const f = (n: number): string => formatAmount(e.resource, n);
  if (e.resource.startsWith('perAgent.')) return `quota exceeded for ${e.resource}: requested ${f(e.requested)} > per-agent limit ${f(e.limit)}`;
  return `quota exceeded for ${e.resource}: used ${f(e.used)} + requested ${f(e.requested)} > limit ${f(e.limit)}`;
}

/** ForbiddenError(QUOTA_EXCEEDED) (HTTP 403) with details {resource, used, requested, limit, tenantId}. */
export function quotaExceededError(tenantId: string, e: QuotaExcess): ForbiddenError {
  return new ForbiddenError(excessMessage(e), { tenantId, ...e }, 'QUOTA_EXCEEDED');
}

export interface QuotaLine {
  /** null: unlimited. */
  limit: number | null;
  used: number;
  /** null: unlimited. Never negative (a limit lowered below use shows 0 free). */
  free: number | null;
}

/** The quota view of GET /tenants/{id}/quota: limit, used, free per resource. */
export function quotaView(limits: QuotaLimits, used: QuotaUsed): Record<'cpuMillicores' | 'memoryMiB' | 'gpu' | 'agents' | 'running', QuotaLine> {
  const line = (limit: number | undefined, u: number): QuotaLine => ({ limit: limit ?? null, used: u, free: limit === undefined ? null : Math.max(0, limit - u) });
  return {
    cpuMillicores: line(limits.cpuMillicores, used.cpuMillicores),
    memoryMiB: line(limits.memoryMiB, used.memoryMiB),
    gpu: line(limits.gpu, used.gpu),
    agents: line(limits.agents, used.agents),
    running: line(limits.running, used.running),
  };
}
