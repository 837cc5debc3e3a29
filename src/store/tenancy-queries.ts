import type { Kysely, Selectable } from 'kysely';
import { isTerminal, type Agent, type AgentStatus, type IsolationClass, type Resources } from '../domain/agent.js';
import { ConflictError, NotFoundError } from '../domain/errors.js';
import { QUOTA_EXCEEDED_REASON, applyLive, excessMessage, findExcess, isQueueable, quotaExceededError, quotaRequestOf } from '../tenancy/quota.js';
import { accrualStep } from '../tenancy/usage-ledger.js';
import type { AgentsTable, ApiKeysTable, AuditLogTable, Database, TenantQuotasTable, TenantsTable, UsageLedgerTable } from './schema.js';
import { PreparedQuery, type SqlKind } from './prepared-query.js';
import type { AdmissionMode, ApiKeyRecord, AuditRecord, QuotaLimits, QuotaUsed, Role, Tenant, TenantQuotaState, UsageRecord } from './store.js';

/**
 * The SQL of tenancy (quota admission, tenants, API keys, usage ledger, audit), shared by
 * every KyselyStore dialect. Functions take the connection or transaction to run on; the
 * quota functions must run inside the transaction that changes the agent.
 */

export { QUOTA_EXCEEDED_REASON };

type Db = Kysely<Database>;

const num = (v: number | string | bigint | null | undefined): number | undefined => (v === null || v === undefined ? undefined : Number(v));

export function limitsFromRow(row: Selectable<TenantQuotasTable> | undefined): QuotaLimits {
  if (!row) return {};
  const l: QuotaLimits = {};
  const set = (k: keyof QuotaLimits, v: number | null): void => {
    if (v !== null) l[k] = Number(v);
  };
  set('cpuMillicores', row.limit_cpu);
  set('memoryMiB', row.limit_memory);
  set('gpu', row.limit_gpu);
  set('agents', row.limit_agents);
  set('running', row.limit_running);
  set('maxAgentCpuMillicores', row.max_agent_cpu);
  set('maxAgentMemoryMiB', row.max_agent_memory);
  set('maxAgentGpu', row.max_agent_gpu);
  return l;
}

type LimitColumn = 'limit_cpu' | 'limit_memory' | 'limit_gpu' | 'limit_agents' | 'limit_running' | 'max_agent_cpu' | 'max_agent_memory' | 'max_agent_gpu';

const LIMIT_COLUMNS: Record<keyof QuotaLimits, LimitColumn> = {
  cpuMillicores: 'limit_cpu',
  memoryMiB: 'limit_memory',
  gpu: 'limit_gpu',
  agents: 'limit_agents',
  running: 'limit_running',
  maxAgentCpuMillicores: 'max_agent_cpu',
  maxAgentMemoryMiB: 'max_agent_memory',
  maxAgentGpu: 'max_agent_gpu',
};

/** Column values for the given limits; `null` (or an absent key with `all`) clears a limit. */
export function limitColumns(limits: { [K in keyof QuotaLimits]?: number | null }, all: boolean): Partial<Record<LimitColumn, number | null>> {
  const out: Partial<Record<LimitColumn, number | null>> = {};
  for (const [k, col] of Object.entries(LIMIT_COLUMNS) as [keyof QuotaLimits, LimitColumn][]) {
    const v = limits[k];
    if (v !== undefined) out[col] = v;
    else if (all) out[col] = null;
  }
  return out;
}

export const usedFromRow = (row: Selectable<TenantQuotasTable> | undefined): QuotaUsed =>
  row
    ? { cpuMillicores: Number(row.used_cpu), memoryMiB: Number(row.used_memory), gpu: Number(row.used_gpu), agents: Number(row.used_agents), running: Number(row.used_running) }
    : { cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 0, running: 0 };

export function quotaStateFromRow(tenantId: string, row: Selectable<TenantQuotasTable> | undefined): TenantQuotaState {
  return { tenantId, admission: (row?.admission as AdmissionMode | undefined) ?? 'reject', limits: limitsFromRow(row), used: usedFromRow(row) };
}

/**
 * The tenant's quota row, locked until the transaction ends (FOR UPDATE on PostgreSQL;
 * SQLite's writer already holds the database). Created, unlimited, when missing.
 */
const selectQuota = new PreparedQuery<{ tenantId: string }, Selectable<TenantQuotasTable>>((db: Db, p) =>
  db.selectFrom('tenant_quotas').selectAll().where('tenant_id', '=', p('tenantId')),
);
const selectQuotaForUpdate = new PreparedQuery<{ tenantId: string }, Selectable<TenantQuotasTable>>((db: Db, p) =>
  db.selectFrom('tenant_quotas').selectAll().where('tenant_id', '=', p('tenantId')).forUpdate(),
);

/** The tenant's quota row, unlocked; undefined when it has none. */
export const readQuotaRow = (db: Db, kind: SqlKind, tenantId: string): Promise<Selectable<TenantQuotasTable> | undefined> =>
  selectQuota.first(db, kind, { tenantId });

/**
 * The tenant's quota row, locked until the transaction ends (FOR UPDATE on PostgreSQL;
 * SQLite's writer already holds the database). Created, unlimited, when missing.
 */
export async function lockQuotaRow(trx: Db, kind: SqlKind, tenantId: string): Promise<Selectable<TenantQuotasTable>> {
  const select = (): Promise<Selectable<TenantQuotasTable> | undefined> => (kind === 'postgres' ? selectQuotaForUpdate : selectQuota).first(trx, kind, { tenantId });
  const row = await select();
  if (row) return row;
  await trx
    .insertInto('tenant_quotas')
    .values({ tenant_id: tenantId })
    .onConflict((oc) => oc.column('tenant_id').doNothing())
    .execute();
  return (await select())!;
}

const addUsed = new PreparedQuery<{ tenantId: string; cpu: number; memory: number; gpu: number; agents: number; running: number }, unknown>((db: Db, p) =>
  db
    .updateTable('tenant_quotas')
    .set((eb) => ({
      used_cpu: eb('used_cpu', '+', p('cpu')),
      used_memory: eb('used_memory', '+', p('memory')),
      used_gpu: eb('used_gpu', '+', p('gpu')),
      used_agents: eb('used_agents', '+', p('agents')),
      used_running: eb('used_running', '+', p('running')),
    }))
    .where('tenant_id', '=', p('tenantId')),
);

/** Adds `delta` to the used counters (negative to release). */
export async function changeUsed(trx: Db, kind: SqlKind, tenantId: string, delta: QuotaUsed): Promise<void> {
  if (!delta.cpuMillicores && !delta.memoryMiB && !delta.gpu && !delta.agents && !delta.running) return;
  await addUsed.execute(trx, kind, {
    tenantId,
    cpu: delta.cpuMillicores,
    memory: delta.memoryMiB,
    gpu: delta.gpu,
    agents: delta.agents,
    running: delta.running,
  });
}

const liveDelta = (r: Resources, sign: 1 | -1, agents = 0): QuotaUsed => ({
  ...applyLive({ cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 0, running: 0 }, { cpuMillicores: r.cpuMillicores, memoryMiB: r.memoryMiB, gpu: r.gpu }, sign),
  agents,
});

/**
 * Admits a new agent row against its tenant's quota (inside the insert's transaction) and
 * returns the row to insert: holding quota, or queued (Pending, QuotaExceeded) for a
 * tenant in queue mode. Throws QUOTA_EXCEEDED otherwise.
 */
export async function admitNewAgent(trx: Db, kind: SqlKind, row: AgentsTable, nowMs: number): Promise<AgentsTable> {
  const quota = await lockQuotaRow(trx, kind, row.tenant_id);
  const resources = (JSON.parse(row.spec) as { resources: Resources }).resources;
  const limits = limitsFromRow(quota);
  const used = usedFromRow(quota);
  const status = JSON.parse(row.status) as AgentStatus;
  const live = !isTerminal(status.phase) && row.desired !== 'deleted';
  const excess = live
    ? findExcess(limits, used, quotaRequestOf(resources, true))
    : findExcess({ agents: limits.agents }, used, { cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 1 });
  const accrued = status.phase === 'Running' ? nowMs : null;
  if (!excess) {
    await changeUsed(trx, kind, row.tenant_id, live ? liveDelta(resources, 1, 1) : { cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 1, running: 0 });
    return { ...row, holds_quota: live ? 1 : 0, accrued_until: accrued };
  }
  if (quota.admission === 'queue' && isQueueable(excess) && status.phase === 'Pending') {
    await changeUsed(trx, kind, row.tenant_id, { cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 1, running: 0 });
    const queued: AgentStatus = { ...status, reason: QUOTA_EXCEEDED_REASON, message: `waiting for quota: ${excessMessage(excess)}` };
    return { ...row, holds_quota: 0, accrued_until: null, status: JSON.stringify(queued) };
  }
  throw quotaExceededError(row.tenant_id, excess);
}

/** What applyTransition needs to know of the agent as it is before the change. */
export interface TransitionSource {
  id: string;
  tenantId: string;
  name: string;
  /** The labels as stored (JSON text); asked only for a ledger row. */
  labelsJson: () => string;
  resources: Resources;
  phase: AgentStatus['phase'];
  desired: string;
  holdsQuota: number;
  accruedUntil: number | null;
}

export function transitionSourceOfRow(row: Selectable<AgentsTable>): TransitionSource {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    labelsJson: () => row.labels,
    resources: (JSON.parse(row.spec) as { resources: Resources }).resources,
    phase: row.phase as AgentStatus['phase'],
    desired: row.desired,
    holdsQuota: Number(row.holds_quota),
    accruedUntil: row.accrued_until === null ? null : Number(row.accrued_until),
  };
}

/**
 * The same from the caller's copy of the record (a compare-and-set checks it is the stored
 * row) and the quota and billing columns read with the version, which the record lacks.
 */
export function transitionSourceOfAgent(agent: Agent, books: Pick<Selectable<AgentsTable>, 'holds_quota' | 'accrued_until'>): TransitionSource {
  return {
    id: agent.id,
    tenantId: agent.tenantId,
    name: agent.name,
    labelsJson: () => JSON.stringify(agent.labels),
    resources: agent.spec.resources,
    phase: agent.status.phase,
    desired: agent.desired,
    holdsQuota: Number(books.holds_quota),
    accruedUntil: books.accrued_until === null ? null : Number(books.accrued_until),
  };
}

export interface AgentTransition {
  /** Values to set on the agent row besides the update's own. */
  set: { holds_quota: number; accrued_until: number | null; status?: string; phase?: string };
  /** The status actually written when admission replaced the requested one (queued for quota). */
  status?: AgentStatus | undefined;
  /** A ledger record closing the Running interval, when the agent left Running. */
  usage?: Omit<UsageLedgerTable, 'id'> | undefined;
}

/**
 * What a status change means for quota and usage, applied to the counters inside the
 * update's transaction: a terminal phase releases the agent's quota (exactly once: the
 * holds_quota flag flips with it); leaving a terminal phase (start) takes it again or
 * queues / throws QUOTA_EXCEEDED; leaving Running closes the billed interval.
 */
export async function applyTransition(trx: Db, kind: SqlKind, old: TransitionSource, status: AgentStatus, nowMs: number): Promise<AgentTransition> {
  const resources = old.resources;
  let holds = old.holdsQuota;
  let newStatus: AgentStatus | undefined;
  const oldPhase = old.phase;
  if (holds === 1 && isTerminal(status.phase)) {
    await lockQuotaRow(trx, kind, old.tenantId);
    await changeUsed(trx, kind, old.tenantId, liveDelta(resources, -1));
    holds = 0;
  } else if (holds === 0 && !isTerminal(status.phase) && status.phase !== 'Deleting' && old.desired !== 'deleted') {
    // A live agent holding no quota is either leaving a terminal phase (start) or queued
    // for quota. Whoever writes it (a start, the node evictor, a drain) must not turn it
    // into a schedulable agent without admission: it takes quota here, or stays queued.
    const staysQueued = oldPhase === 'Pending' && status.phase === 'Pending' && status.reason === QUOTA_EXCEEDED_REASON;
    if (!staysQueued) {
      const quota = await lockQuotaRow(trx, kind, old.tenantId);
      const excess = findExcess(limitsFromRow(quota), usedFromRow(quota), quotaRequestOf(resources, false));
      if (!excess) {
        await changeUsed(trx, kind, old.tenantId, liveDelta(resources, 1));
        holds = 1;
      } else if (quota.admission === 'queue' && isQueueable(excess) && (status.phase === 'Pending' || !isTerminal(oldPhase))) {
        newStatus = { ...status, phase: 'Pending', reason: QUOTA_EXCEEDED_REASON, message: `waiting for quota: ${excessMessage(excess)}` };
      } else {
        throw quotaExceededError(old.tenantId, excess);
      }
    }
  }
  let accrued = old.accruedUntil;
  let usage: AgentTransition['usage'];
  if (old.phase === 'Running' && status.phase !== 'Running') {
    if (accrued !== null) {
      const step = accrualStep(accrued, nowMs);
      if (step.toMs > step.fromMs) {
        usage = {
          tenant_id: old.tenantId,
          agent_id: old.id,
          agent_name: old.name,
          labels: old.labelsJson(),
          start_ms: step.fromMs,
          end_ms: step.toMs,
          cpu_millicores: resources.cpuMillicores,
          memory_mib: resources.memoryMiB,
          gpu: resources.gpu,
          // The container's counter is out of reach here; the usage meter's next pass fills
          // it from the sampler's last reading of the run (fillUsedCpu).
          used_cpu_us: null,
        };
      }
    }
    accrued = null;
  } else if (status.phase === 'Running' && old.phase !== 'Running') {
    accrued = nowMs;
  }
  return { set: { holds_quota: holds, accrued_until: accrued, ...(newStatus ? { status: JSON.stringify(newStatus), phase: newStatus.phase } : {}) }, status: newStatus, usage };
}

/** Releases what a deleted agent row held. */
export async function releaseDeleted(trx: Db, kind: SqlKind, old: Selectable<AgentsTable>): Promise<void> {
  const resources = (JSON.parse(old.spec) as { resources: Resources }).resources;
  await lockQuotaRow(trx, kind, old.tenant_id);
  const delta = Number(old.holds_quota) === 1 ? liveDelta(resources, -1, -1) : { cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: -1, running: 0 };
  await changeUsed(trx, kind, old.tenant_id, delta);
}

/**
 * Takes quota for a queued agent if it fits now. Returns the new status JSON, or
 * undefined when it does not fit.
 */
export async function admitQueued(trx: Db, kind: SqlKind, old: Selectable<AgentsTable>): Promise<string | undefined> {
  const resources = (JSON.parse(old.spec) as { resources: Resources }).resources;
  const quota = await lockQuotaRow(trx, kind, old.tenant_id);
  if (findExcess(limitsFromRow(quota), usedFromRow(quota), quotaRequestOf(resources, false))) return undefined;
  await changeUsed(trx, kind, old.tenant_id, liveDelta(resources, 1));
  const status = JSON.parse(old.status) as AgentStatus;
  return JSON.stringify({ ...status, reason: 'Admitted', message: 'admitted: quota is available; waiting to be scheduled' } satisfies AgentStatus);
}

export function tenantFromRows(t: Selectable<TenantsTable>, q: Selectable<TenantQuotasTable> | undefined): Tenant {
  const tenant: Tenant = {
    id: t.id,
    name: t.name,
    admission: (q?.admission as AdmissionMode | undefined) ?? 'reject',
    quota: limitsFromRow(q),
    createdAt: Number(t.created_at),
    updatedAt: Number(t.updated_at),
  };
  if (t.min_isolation !== null && t.min_isolation !== undefined) tenant.minIsolation = t.min_isolation as IsolationClass;
  return tenant;
}

export const tenantNotFound = (id: string): NotFoundError => new NotFoundError('TENANT_NOT_FOUND', `tenant "${id}" does not exist`, { tenantId: id });
export const tenantExists = (id: string): ConflictError => new ConflictError('TENANT_EXISTS', `tenant "${id}" already exists`, { tenantId: id });

export function apiKeyFromRow(r: Selectable<ApiKeysTable>): ApiKeyRecord {
  const k: ApiKeyRecord = {
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    role: r.role as Role,
    secretSha256: r.secret_sha256,
    createdAt: Number(r.created_at),
    createdBy: r.created_by,
  };
  if (r.expires_at !== null) k.expiresAt = Number(r.expires_at);
  if (r.revoked_at !== null) k.revokedAt = Number(r.revoked_at);
  return k;
}

export const apiKeyRow = (k: ApiKeyRecord): ApiKeysTable => ({
  id: k.id,
  tenant_id: k.tenantId,
  name: k.name,
  role: k.role,
  secret_sha256: k.secretSha256,
  created_at: k.createdAt,
  created_by: k.createdBy,
  expires_at: k.expiresAt ?? null,
  revoked_at: k.revokedAt ?? null,
});

export function usageFromRow(r: Selectable<UsageLedgerTable>): UsageRecord {
  const u: UsageRecord = {
    id: Number(r.id),
    tenantId: r.tenant_id,
    agentId: r.agent_id,
    agentName: r.agent_name,
    labels: JSON.parse(r.labels) as Record<string, string>,
    startMs: Number(r.start_ms),
    endMs: Number(r.end_ms),
    cpuMillicores: Number(r.cpu_millicores),
    memoryMiB: Number(r.memory_mib),
    gpu: Number(r.gpu),
  };
  const used = num(r.used_cpu_us);
  if (used !== undefined) u.usedCpuMicros = used;
  return u;
}

export const usageRow = (u: UsageRecord): Omit<UsageLedgerTable, 'id'> => ({
  tenant_id: u.tenantId,
  agent_id: u.agentId,
  agent_name: u.agentName,
  labels: JSON.stringify(u.labels),
  start_ms: u.startMs,
  end_ms: u.endMs,
  cpu_millicores: u.cpuMillicores,
  memory_mib: u.memoryMiB,
  gpu: u.gpu,
  used_cpu_us: u.usedCpuMicros ?? null,
});

export function auditFromRow(r: Selectable<AuditLogTable>): AuditRecord {
  const a: AuditRecord = {
    id: Number(r.id),
    time: Number(r.time),
    requestId: r.request_id,
    subject: r.subject,
    role: r.role,
    tenantId: r.tenant_id,
    method: r.method,
    route: r.route,
    status: Number(r.status),
  };
  if (r.target_id !== null) a.targetId = r.target_id;
  return a;
}
