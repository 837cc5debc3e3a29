import type { EgressAuditRecord } from '../egress/egress-audit.js';
import type { Agent, AgentStatus, DesiredState, AgentSpec, IsolationClass, Phase } from '../domain/agent.js';
import type { NewPlatformEvent, PlatformEvent } from '../domain/event.js';
import type { Taint } from '../domain/node.js';

/** Fields for a new agent; the store assigns version 1. */
export interface NewAgent {
  id: string;
  tenantId: string;
  name: string;
  labels: Record<string, string>;
  spec: AgentSpec;
  desired: DesiredState;
  status: AgentStatus;
  createdAt: number;
}

export interface IdempotencyInput {
  key: string;
  /** Hash of the request body: the same key with a different body is refused. */
  requestHash: string;
}

export interface CreateAgentResult {
  agent: Agent;
  /** False when an earlier request with the same idempotency key created it. */
  created: boolean;
  /** The events passed to createAgent as stored with the agent (none on a replay). */
  events: PlatformEvent[];
}

export interface AgentFilter {
  tenantId?: string | undefined;
  phase?: Phase[] | undefined;
  /** Every label must match exactly. */
  labels?: Record<string, string> | undefined;
  /** Only agents whose desired state is one of these. */
  desired?: DesiredState[] | undefined;
  node?: string | undefined;
  /** Page size (default 100, max 1000). */
  limit?: number | undefined;
  /** Opaque cursor from a previous page. */
  cursor?: string | undefined;
}

/** A pass over agents in id order (scanAgents), for the control plane's own loops. */
export interface AgentScan {
  phase?: Phase[] | undefined;
  node?: string | undefined;
  /** Agents with an id greater than this (the last id of the previous page). */
  afterId?: string | undefined;
  /** Rows visited per page, 1 to 1000 (a filtered page may hold fewer). */
  limit: number;
}

/** The columns of an agent that say whether it changed and where it stands; no JSON to parse. */
export interface AgentHead {
  id: string;
  version: number;
  phase: Phase;
  desired: DesiredState;
  node?: string | undefined;
}

export interface AgentHeadPage {
  items: AgentHead[];
  nextAfterId?: string | undefined;
}

export interface AgentScanPage {
  items: Agent[];
  /** Where the next page starts (its afterId); absent when the pass is complete. */
  nextAfterId?: string | undefined;
}

export interface AgentPage {
  items: Agent[];
  /** Absent on the last page. */
  nextCursor?: string | undefined;
}

/** A partial update; the version is bumped and updatedAt set by the store. */
export interface AgentUpdate {
  desired?: DesiredState;
  status?: AgentStatus;
  labels?: Record<string, string>;
  spec?: AgentSpec;
  updatedAt: number;
}

export interface EventFilter {
  tenantId?: string | undefined;
  objectKind?: PlatformEvent['objectKind'] | undefined;
  objectId?: string | undefined;
  /** Only events at or after this time (ms epoch). */
  sinceMs?: number | undefined;
  /** Only events with an id greater than this. */
  afterId?: number | undefined;
  limit?: number | undefined;
}

/**
 * What an operator set on a node and what must survive a control-plane restart: cordon,
 * the unhealthy mark, and label/taint overrides. Capacity and readiness are not stored:
 * they are read from the node's runtime again after a restart.
 */
export interface NodeState {
  id: string;
  cordoned: boolean;
  unhealthy: boolean;
  /** Replaces the configured labels when set. */
  labels?: Record<string, string> | undefined;
  /** Replaces the configured taints when set. */
  taints?: Taint[] | undefined;
  /** ms epoch of the last write; for `unhealthy`, when the mark was set (its cool-down counts from here). */
  updatedAt: number;
}


/** Roles a principal (API key or the bootstrap token) can have; see src/tenancy/roles.ts. */
export type Role = 'platform-admin' | 'tenant-admin' | 'member' | 'viewer';

/** What a tenant does with a create that does not fit its quota. */
export type AdmissionMode = 'reject' | 'queue';

/**
 * Quota limits of a tenant; an absent (undefined) limit is unlimited. Totals count the
 * requests of agents that hold quota (admitted, not terminal); `agents` counts records.
 */
export interface QuotaLimits {
  cpuMillicores?: number | undefined;
  memoryMiB?: number | undefined;
  gpu?: number | undefined;
  /** Agent records, whatever their phase (terminal ones included, until deleted). */
  agents?: number | undefined;
  /** Live agents holding quota (admitted and not Succeeded, Failed or Stopped). */
  running?: number | undefined;
  /** Largest request of a single agent. */
  maxAgentCpuMillicores?: number | undefined;
  maxAgentMemoryMiB?: number | undefined;
  maxAgentGpu?: number | undefined;
}

/** Exact counters, maintained in the same transactions that change agents. */
export interface QuotaUsed {
  cpuMillicores: number;
  memoryMiB: number;
  gpu: number;
  agents: number;
  running: number;
}

export interface TenantQuotaState {
  tenantId: string;
  admission: AdmissionMode;
  limits: QuotaLimits;
  used: QuotaUsed;
}

export interface Tenant {
  id: string;
  name: string;
  admission: AdmissionMode;
  quota: QuotaLimits;
  /**
   * The weakest isolation class this tenant's agents may run in (raised, never refused).
   * Absent: only the platform's minimum applies.
   */
  minIsolation?: IsolationClass | undefined;
  createdAt: number;
  updatedAt: number;
}

export interface NewTenant {
  id: string;
  name: string;
  admission: AdmissionMode;
  quota: QuotaLimits;
  /** @default undefined (no tenant minimum) */
  minIsolation?: IsolationClass | undefined;
  createdAt: number;
}

/** A partial tenant update; a quota field set to null removes that limit, and so does `minIsolation: null`. */
export interface TenantPatch {
  name?: string | undefined;
  admission?: AdmissionMode | undefined;
  quota?: { [K in keyof QuotaLimits]?: number | null } | undefined;
  minIsolation?: IsolationClass | null | undefined;
  updatedAt: number;
}

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  name: string;
  role: Role;
  /** sha256 hex of the secret part; the secret itself is never stored. */
  secretSha256: string;
  createdAt: number;
  createdBy: string;
  expiresAt?: number | undefined;
  revokedAt?: number | undefined;
}

/**
 * One closed interval of an agent's Running time: the resources it held (requests) from
 * `startMs` to `endMs`. Quantities (core-seconds, ...) and prices are derived at read time.
 */
export interface UsageRecord {
  id?: number | undefined;
  tenantId: string;
  agentId: string;
  agentName: string;
  labels: Record<string, string>;
  startMs: number;
  endMs: number;
  cpuMillicores: number;
  memoryMiB: number;
  gpu: number;
  /** CPU time the container used in the interval, in microseconds; undefined when unknown. */
  usedCpuMicros?: number | undefined;
}

export interface UsageFilter {
  tenantId?: string | undefined;
  /** Records overlapping [fromMs, toMs). */
  fromMs?: number | undefined;
  toMs?: number | undefined;
  /**
   * Also the open intervals of Running agents, from their accrued_until up to this time
   * (the piece the usage meter has not closed yet), so a report is current whatever the
   * accrual interval. Steps follow accrualStep with `maxOpenStepMs`.
   */
  openUntilMs?: number | undefined;
  maxOpenStepMs?: number | undefined;
}

/** One accrual step of the usage meter: close [expectedAccruedUntil, record.endMs]. */
export interface UsageAccrual {
  agentId: string;
  /** The agent's accrued_until as the meter read it (compare-and-set). */
  expectedAccruedUntil: number;
  /** Where accrued_until moves to (>= record.endMs; later when a clock jump was skipped). */
  accruedUntil: number;
  /** Absent when nothing is billed (e.g. a skipped clock jump). */
  record?: UsageRecord | undefined;
}

/** A Running agent and where its accrual stands. */
export interface AccruingAgent {
  agent: Agent;
  accruedUntil: number;
}

export interface AuditRecord {
  id?: number | undefined;
  time: number;
  requestId: string;
  subject: string;
  role: string;
  tenantId: string;
  method: string;
  route: string;
  targetId?: string | undefined;
  status: number;
}

export interface AuditFilter {
  tenantId?: string | undefined;
  sinceMs?: number | undefined;
  /** Only records with a smaller id (paging backwards, newest first). */
  beforeId?: number | undefined;
  limit?: number | undefined;
}

/** A tenant secret as stored: sealed, never plaintext (src/security/secret-service.ts). */
export interface StoredSecret {
  tenantId: string;
  name: string;
  /** Id of the key that sealed it; see src/security/secret-cipher.ts. */
  keyId: string;
  ciphertext: string;
  createdAt: number;
  updatedAt: number;
}

/** An egress proxy audit record with its store id. */
export interface StoredEgressAudit extends EgressAuditRecord {
  id: number;
}

export interface EgressAuditFilter {
  agentId?: string | undefined;
  tenantId?: string | undefined;
  /** Only records with a greater id (paging forward, oldest first). */
  afterId?: number | undefined;
  limit?: number | undefined;
}

/**
 * Persistent state of the platform. Adapters: SQLite (embedded default) and
 * PostgreSQL, both through Kysely with the same migrations. No driver type crosses
 * this interface. Every adapter passes test/conformance/store-conformance.ts.
 */
export interface Store {
  /** Which adapter this is ("sqlite" | "postgres"). */
  readonly kind: string;
  /** Applies pending migrations; safe to call on every start and from several processes. */
  migrate(): Promise<void>;
  /** Throws UnavailableError(STORE_UNAVAILABLE) when the database does not answer. */
  ping(): Promise<void>;

  /**
   * Inserts an agent. Throws ConflictError(AGENT_NAME_TAKEN) when the tenant already
   * has an agent of that name. With `idempotency`, an earlier agent created under the
   * same (tenant, key) is returned with `created: false`; the same key with a different
   * request hash throws ConflictError(IDEMPOTENCY_KEY_REUSED). Atomic: concurrent calls
   * with one key create exactly one agent.
   *
   * Admission happens in the same transaction, against the tenant's quota row (locked on
   * PostgreSQL; SQLite has one writer): a create that does not fit throws
   * ForbiddenError(QUOTA_EXCEEDED), or, for a tenant with admission "queue", is stored
   * Pending with reason QuotaExceeded, holding no quota until admitQueuedAgent. A replay
   * of an idempotent create is not admitted again. updateAgent releases an agent's quota
   * when it becomes Succeeded, Failed or Stopped and takes it again when it leaves such a
   * phase (start), throwing QUOTA_EXCEEDED then when it does not fit; deleteAgent releases it.
   *
   * `events` (about the new agent) are stored in the same transaction, only when it is created.
   */
  createAgent(agent: NewAgent, idempotency?: IdempotencyInput, events?: readonly NewPlatformEvent[]): Promise<CreateAgentResult>;
  getAgent(id: string): Promise<Agent | undefined>;
  getAgentByName(tenantId: string, name: string): Promise<Agent | undefined>;
  /** Ordered by createdAt then id; cursor-paginated. */
  listAgents(filter?: AgentFilter): Promise<AgentPage>;
  /**
   * One page of a pass over all agents (or those in `phase` / on `node`) in id order. Each
   * page walks an index from where the last one stopped, so a whole pass costs one visit
   * per agent; listAgents' (createdAt, id) order with a phase filter has no index to walk
   * and sorted the matching rows again for every page (at 100,000 agents the usage
   * sampler's and the placer's passes alone kept a core busy). For the control plane's
   * loops (resync, sampler, placer rebuild, evictor), not for users.
   */
  scanAgents(scan: AgentScan): Promise<AgentScanPage>;
  /**
   * scanAgents reading only each agent's AgentHead: a pass that re-reads (getAgents) just
   * the agents whose version moved costs one small row per agent instead of parsing every
   * record (the usage sampler and the resync at 100,000 agents).
   */
  scanAgentHeads(scan: AgentScan): Promise<AgentHeadPage>;
  /** The agents with these ids that exist, in no particular order (at most 1000 ids). */
  getAgents(ids: readonly string[]): Promise<Agent[]>;
  /**
   * Number of agents per (tenant, phase), for metrics; only pairs with at least one agent
   * appear. One grouped query, no rows read into memory.
   */
  countAgents(): Promise<{ tenantId: string; phase: Phase; count: number }[]>;
  /**
   * Compare-and-set on the version. Throws VersionConflictError when the stored
   * version differs, agentNotFound when the agent is gone. Returns the new record.
   */
  updateAgent(id: string, expectedVersion: number, update: AgentUpdate): Promise<Agent>;
  /**
   * updateAgent of the caller's copy `current` (compare-and-set on current.version) and
   * events about the change, in one transaction: the events are stored if and only if the
   * update is (a version conflict stores none). The new record is built from `current` and
   * the update instead of being read back, so `current` must be a record as read from the
   * store. Saves the controller a commit per event and the reads of a full row; a crash
   * cannot leave a transition without its events.
   *
   * With `fencingToken` (the leader's controller writes), the write is fenced: it is
   * refused with FencedOutError, nothing written, when a larger token has been recorded
   * (recordFencingToken), checked in the same transaction as the write.
   */
  updateAgentWithEvents(current: Agent, update: AgentUpdate, events: readonly NewPlatformEvent[], fencingToken?: number): Promise<{ agent: Agent; events: PlatformEvent[] }>;
  /**
   * Removes the agent and its idempotency keys (events stay until pruned). No error if absent.
   * With `fencingToken`, fenced as updateAgentWithEvents is.
   */
  deleteAgent(id: string, fencingToken?: number): Promise<void>;

  /**
   * Records a new leader's fencing token: raises the recorded token to `fencingToken`,
   * never lowers it. Returns the token recorded now; larger than `fencingToken` means a
   * newer leader recorded its own first, and this one must not lead. Once it returns,
   * no fenced write with a smaller token commits, including ones already in flight
   * (PostgreSQL: it waits for them; SQLite: one writer). The wait is bounded: a fenced
   * write stalled mid-transaction is ended by the server after the store's fencing
   * timeout idle (and cannot commit), and a record still waiting after that long fails
   * with UnavailableError(LEADER_FENCE_LOCK_TIMEOUT), nothing recorded.
   */
  recordFencingToken(fencingToken: number): Promise<number>;
  /**
   * Throws FencedOutError when a token larger than `fencingToken` is recorded. For a
   * leader about to act outside the store (remove a container); a check, not a lock:
   * a takeover right after it is not seen.
   */
  assertFencingToken(fencingToken: number): Promise<void>;

  appendEvent(event: NewPlatformEvent): Promise<PlatformEvent>;
  /** Oldest first. */
  listEvents(filter?: EventFilter): Promise<PlatformEvent[]>;
  /** Deletes events older than the given time; returns how many. */
  pruneEvents(beforeMs: number): Promise<number>;

  /** Every stored node state, ordered by id. */
  listNodeStates(): Promise<NodeState[]>;
  /** Inserts or replaces the state of one node (last writer wins). */
  putNodeState(state: NodeState): Promise<void>;

  /** Small key/value settings (e.g. the hashed bootstrap admin token). */
  getSetting(key: string): Promise<string | undefined>;
  /** Sets only when absent; returns the value now stored (first writer wins). */
  putSettingIfAbsent(key: string, value: string): Promise<string>;


  // ---- tenancy (src/tenancy) -------------------------------------------------------
  /** Throws ConflictError(TENANT_EXISTS). Creates the tenant's quota row too. */
  createTenant(tenant: NewTenant): Promise<Tenant>;
  getTenant(id: string): Promise<Tenant | undefined>;
  /** Ordered by id. */
  listTenants(): Promise<Tenant[]>;
  /** Throws NotFoundError(TENANT_NOT_FOUND). */
  updateTenant(id: string, patch: TenantPatch): Promise<Tenant>;
  /**
   * Removes the tenant, its API keys, secrets and quota row in one transaction (usage,
   * audit and event records stay). Throws ConflictError(TENANT_HAS_AGENTS) while it has agent records.
   * No error if absent.
   */
  deleteTenant(id: string): Promise<void>;
  /** Limits and exact used counters; a tenant without a quota row reads as unlimited and unused. */
  getTenantQuota(tenantId: string): Promise<TenantQuotaState>;

  createApiKey(key: ApiKeyRecord): Promise<void>;
  getApiKey(id: string): Promise<ApiKeyRecord | undefined>;
  /** Newest first, revoked ones included. */
  listApiKeys(tenantId: string): Promise<ApiKeyRecord[]>;
  /** Sets revokedAt; false when the key does not exist in that tenant (or is revoked already). */
  revokeApiKey(tenantId: string, id: string, revokedAt: number): Promise<boolean>;

  /** Pending agents waiting for quota (queue admission), any order; at most `limit` (default 1000). */
  listQueuedAgents(tenantId?: string, limit?: number): Promise<Agent[]>;
  /**
   * Admits a queued agent if it fits now: takes its quota and sets status reason
   * "Admitted", atomically. Returns the updated agent, or undefined when it still does not
   * fit, is no longer queued, or is gone.
   */
  admitQueuedAgent(id: string, now: number): Promise<Agent | undefined>;

  /** Running agents with their accrual position, for the usage meter (paged by agent id). */
  listAccruingAgents(afterId?: string, limit?: number): Promise<AccruingAgent[]>;
  /**
   * Applies accrual steps, each atomically: moves the agent's accrued_until from the
   * expected value (compare-and-set, so two replicas or a restarted meter never bill an
   * interval twice) and appends the record. Returns how many steps applied.
   */
  accrueUsage(steps: UsageAccrual[]): Promise<number>;
  /** Ordered by startMs, then id. */
  listUsage(filter: UsageFilter): Promise<UsageRecord[]>;
  /**
   * The agent's ledger record with the latest start in [startFromMs, startBeforeMs) (the
   * last written on a tie), or undefined: how the usage meter finds a run's closing piece.
   */
  lastUsageOfAgent(tenantId: string, agentId: string, startFromMs: number, startBeforeMs: number): Promise<UsageRecord | undefined>;
  /**
   * Sets the used CPU of a ledger record that has none, compare-and-set: a record that has a
   * figure keeps it, so replicas filling the same closing piece write it once. Returns
   * whether it was set (false too when the record does not exist).
   */
  fillUsedCpu(recordId: number, usedCpuMicros: number): Promise<boolean>;

  appendAudit(record: AuditRecord): Promise<void>;
  /** Newest first. */
  listAudit(filter: AuditFilter): Promise<AuditRecord[]>;

  // ---- secrets and egress audit (src/security) ----------------------------------------
  /** Inserts or replaces a tenant's secret (keeps createdAt of an existing one); returns the stored row. */
  putSecret(secret: Omit<StoredSecret, 'createdAt'> & { createdAt: number }): Promise<StoredSecret>;
  getSecret(tenantId: string, name: string): Promise<StoredSecret | undefined>;
  /** Ordered by name; every tenant when tenantId is undefined (key rotation). */
  listSecrets(tenantId?: string): Promise<StoredSecret[]>;
  /** False when it did not exist. */
  deleteSecret(tenantId: string, name: string): Promise<boolean>;
  /** Appends egress proxy audit records (one batch, one write). */
  appendEgressAudit(records: readonly EgressAuditRecord[]): Promise<void>;
  /** Oldest first. */
  listEgressAudit(filter: EgressAuditFilter): Promise<StoredEgressAudit[]>;
  /** Deletes records older than the given time; returns how many. */
  pruneEgressAudit(beforeMs: number): Promise<number>;

  close(): Promise<void>;
}
