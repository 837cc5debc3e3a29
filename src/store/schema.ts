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

export interface Database {
  agents: AgentsTable;
  idempotency_keys: IdempotencyKeysTable;
  events: EventsTable;
  settings: SettingsTable;
  nodes: NodesTable;
  schema_migrations: SchemaMigrationsTable;
}
