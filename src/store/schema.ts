import type { Generated } from 'kysely';

/**
 * Row shapes of the tables, as Kysely sees them. JSON columns are text in both
 * adapters (so one set of migrations serves both); ms timestamps are integers
 * (bigint in PostgreSQL, parsed back to JS numbers by the adapter).
 */
export interface AgentsTable {
  id: string;
  tenant_id: string;
  name: string;
  /** JSON object of string labels. */
  labels: string;
  /** JSON AgentSpec. */
  spec: string;
  desired: string;
  /** Copy of status.phase, kept so that filtering by phase uses an index. */
  phase: string;
  /** Copy of status.node, kept so that controllers can find a node's agents. */
  node: string | null;
  /** JSON AgentStatus. */
  status: string;
  created_at: number;
  updated_at: number;
  version: number;
  /** 1 while the agent's requests count in its tenant's quota (tenancy). */
  holds_quota: number;
  /** How far the usage ledger has billed the current Running interval (ms); null when not Running. */
  accrued_until: number | null;
}

export interface IdempotencyKeysTable {
  tenant_id: string;
  key: string;
  request_hash: string;
  agent_id: string;
  created_at: number;
}

export interface EventsTable {
  id: Generated<number>;
  tenant_id: string;
  object_kind: string;
  object_id: string;
  type: string;
  reason: string;
  message: string;
  /** JSON, or null when the event carries no data. */
  data: string | null;
  time: number;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface NodesTable {
  id: string;
  /** 0 or 1 (booleans as integers in both adapters). */
  cordoned: number;
  unhealthy: number;
  /** JSON label object, or null: no override. */
  labels: string | null;
  /** JSON taint array, or null: no override. */
  taints: string | null;
  updated_at: number;
}

export interface SchemaMigrationsTable {
  id: string;
  applied_at: number;
}

export interface TenantsTable {
  id: string;
  name: string;
  created_at: number;
  updated_at: number;
  /** 'runc' | 'gvisor' | null (no tenant minimum); migration 0005. */
  min_isolation: string | null;
}

/** Limits (null: unlimited) and exact used counters of one tenant. */
export interface TenantQuotasTable {
  tenant_id: string;
  /** 'reject' | 'queue'. */
  admission: Generated<string>;
  limit_cpu: number | null;
  limit_memory: number | null;
  limit_gpu: number | null;
  limit_agents: number | null;
  limit_running: number | null;
  max_agent_cpu: number | null;
  max_agent_memory: number | null;
  max_agent_gpu: number | null;
  used_cpu: Generated<number>;
  used_memory: Generated<number>;
  used_gpu: Generated<number>;
  used_agents: Generated<number>;
  used_running: Generated<number>;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: string;
  name: string;
  role: string;
  secret_sha256: string;
  created_at: number;
  created_by: string;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface UsageLedgerTable {
  id: Generated<number>;
  tenant_id: string;
  agent_id: string;
  agent_name: string;
  /** JSON labels of the agent when the interval was closed. */
  labels: string;
  start_ms: number;
  end_ms: number;
  cpu_millicores: number;
  memory_mib: number;
  gpu: number;
  used_cpu_us: number | null;
}

export interface AuditLogTable {
  id: Generated<number>;
  time: number;
  request_id: string;
  subject: string;
  role: string;
  tenant_id: string;
  method: string;
  route: string;
  target_id: string | null;
  status: number;
}

/** Tenant secrets, sealed with AES-256-GCM (src/security/secret-cipher.ts); never plaintext. */
export interface SecretsTable {
  tenant_id: string;
  name: string;
  /** Id of the key that sealed the value (rotation re-seals under the new key). */
  key_id: string;
  /** base64 iv | tag | ciphertext. */
  ciphertext: string;
  created_at: number;
  updated_at: number;
}

/** One egress proxy connection attempt (src/egress/egress-audit.ts). */
export interface EgressAuditTable {
  id: Generated<number>;
  time: number;
  agent_id: string | null;
  tenant_id: string | null;
  source_ip: string;
  method: string;
  host: string;
  port: number | null;
  decision: string;
  reason: string;
  /** JSON of the remaining fields (resolvedIp, sni, rule, detail, httpStatus). */
  detail: string | null;
  bytes_up: number;
  bytes_down: number;
  duration_ms: number;
}

/** A single row (id 1): the largest leader fencing token recorded (Store.recordFencingToken). */
export interface LeaderFenceTable {
  id: number;
  token: number;
}

export interface Database {
  tenants: TenantsTable;
  tenant_quotas: TenantQuotasTable;
  api_keys: ApiKeysTable;
  usage_ledger: UsageLedgerTable;
  audit_log: AuditLogTable;
  agents: AgentsTable;
  idempotency_keys: IdempotencyKeysTable;
  events: EventsTable;
  settings: SettingsTable;
  nodes: NodesTable;
  schema_migrations: SchemaMigrationsTable;
  secrets: SecretsTable;
  egress_audit: EgressAuditTable;
  leader_fence: LeaderFenceTable;
}
