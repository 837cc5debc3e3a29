import { sql, type Kysely } from 'kysely';
import type { StoreDialect } from './store-dialect.js';

/** What a migration may need to know about the database it runs on. */
export interface MigrationContext {
  kind: StoreDialect['kind'];
  autoIncrementType: StoreDialect['autoIncrementType'];
}

/**
 * One schema change. Migrations are applied in list order, each once, recorded by
 * `id` in schema_migrations. Never edit or reorder an applied migration: append a
 * new one (later: nodes, tenants, api_keys, usage).
 */
export interface Migration {
  id: string;
  // Kysely<any>: a migration sees the schema as it was at that point, not as today's types say.
  up(db: Kysely<any>, ctx: MigrationContext): Promise<void>;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    id: '0001_agents_events_settings',
    async up(db, ctx) {
      await db.schema
        .createTable('agents')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('spec', 'text', (c) => c.notNull())
        .addColumn('desired', 'text', (c) => c.notNull())
        .addColumn('phase', 'text', (c) => c.notNull())
        .addColumn('node', 'text')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addUniqueConstraint('agents_tenant_id_name_unique', ['tenant_id', 'name'])
        .execute();
      await db.schema.createIndex('agents_phase_idx').on('agents').column('phase').execute();
      await db.schema.createIndex('agents_created_at_id_idx').on('agents').columns(['created_at', 'id']).execute();
      await db.schema.createIndex('agents_node_idx').on('agents').column('node').execute();

      await db.schema
        .createTable('idempotency_keys')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('request_hash', 'text', (c) => c.notNull())
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('idempotency_keys_pk', ['tenant_id', 'key'])
        .execute();
      // deleteAgent removes an agent's keys; without this it would scan the table.
      await db.schema.createIndex('idempotency_keys_agent_id_idx').on('idempotency_keys').column('agent_id').execute();

      await db.schema
        .createTable('events')
        .addColumn('id', ctx.autoIncrementType, (c) => (ctx.kind === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('object_kind', 'text', (c) => c.notNull())
        .addColumn('object_id', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('data', 'text')
        .addColumn('time', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_object_idx').on('events').columns(['object_kind', 'object_id', 'id']).execute();
      await db.schema.createIndex('events_time_idx').on('events').column('time').execute();

      await db.schema
        .createTable('settings')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },
  },
  {
    id: '0002_nodes',
    async up(db) {
      // Only what operators set and what must outlive a restart; capacity and readiness
      // come from the runtimes.
      await db.schema
        .createTable('nodes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('cordoned', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('unhealthy', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('labels', 'text')
        .addColumn('taints', 'text')
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  {
    id: '0003_tenancy',
    async up(db, ctx) {
      await db.schema
        .createTable('tenants')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      // Limits and exact used counters in one row per tenant: admission locks this row and
      // changes it in the same transaction as the agent, so the counters never drift.
      // A null limit is unlimited. Rows appear on demand for tenants without a record.
      await db.schema
        .createTable('tenant_quotas')
        .addColumn('tenant_id', 'text', (c) => c.primaryKey())
        .addColumn('admission', 'text', (c) => c.notNull().defaultTo('reject'))
        .addColumn('limit_cpu', 'bigint')
        .addColumn('limit_memory', 'bigint')
        .addColumn('limit_gpu', 'bigint')
        .addColumn('limit_agents', 'bigint')
        .addColumn('limit_running', 'bigint')
        .addColumn('max_agent_cpu', 'bigint')
        .addColumn('max_agent_memory', 'bigint')
        .addColumn('max_agent_gpu', 'bigint')
        .addColumn('used_cpu', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('used_memory', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('used_gpu', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('used_agents', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('used_running', 'bigint', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('secret_sha256', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('api_keys_tenant_idx').on('api_keys').column('tenant_id').execute();
      // holds_quota: whether the agent's requests are counted in its tenant's used_*;
      // flipped in the same transaction as the phase change, so release is exact and idempotent.
      // accrued_until: how far the usage ledger has billed the current Running interval.
      await db.schema.alterTable('agents').addColumn('holds_quota', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('agents').addColumn('accrued_until', 'bigint').execute();
      await db.schema
        .createTable('usage_ledger')
        .addColumn('id', ctx.autoIncrementType, (c) => (ctx.kind === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('agent_name', 'text', (c) => c.notNull())
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('start_ms', 'bigint', (c) => c.notNull())
        .addColumn('end_ms', 'bigint', (c) => c.notNull())
        .addColumn('cpu_millicores', 'bigint', (c) => c.notNull())
        .addColumn('memory_mib', 'bigint', (c) => c.notNull())
        .addColumn('gpu', 'bigint', (c) => c.notNull())
        .addColumn('used_cpu_us', 'bigint')
        .execute();
      await db.schema.createIndex('usage_ledger_tenant_start_idx').on('usage_ledger').columns(['tenant_id', 'start_ms']).execute();
      await db.schema
        .createTable('audit_log')
        .addColumn('id', ctx.autoIncrementType, (c) => (ctx.kind === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('time', 'bigint', (c) => c.notNull())
        .addColumn('request_id', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('target_id', 'text')
        .addColumn('status', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_log_tenant_idx').on('audit_log').columns(['tenant_id', 'id']).execute();

      // Existing data: the bootstrap admin's tenant, and counters for the agents already there.
      const now = Date.now();
      await db.insertInto('tenants').values({ id: 'default', name: 'default', created_at: now, updated_at: now }).execute();
      const agents = (await db.selectFrom('agents').select(['id', 'tenant_id', 'phase', 'spec']).execute()) as { id: string; tenant_id: string; phase: string; spec: string }[];
      const used = new Map<string, { cpu: number; memory: number; gpu: number; agents: number; running: number }>([['default', { cpu: 0, memory: 0, gpu: 0, agents: 0, running: 0 }]]);
      for (const a of agents) {
        const u = used.get(a.tenant_id) ?? { cpu: 0, memory: 0, gpu: 0, agents: 0, running: 0 };
        used.set(a.tenant_id, u);
        u.agents += 1;
        if (['Succeeded', 'Failed', 'Stopped'].includes(a.phase)) continue;
        const r = (JSON.parse(a.spec) as { resources: { cpuMillicores: number; memoryMiB: number; gpu: number } }).resources;
        u.cpu += r.cpuMillicores;
        u.memory += r.memoryMiB;
        u.gpu += r.gpu;
        u.running += 1;
        await db.updateTable('agents').set({ holds_quota: 1, ...(a.phase === 'Running' ? { accrued_until: now } : {}) }).where('id', '=', a.id).execute();
      }
      for (const [tenantId, u] of used) {
        await db
          .insertInto('tenant_quotas')
          .values({ tenant_id: tenantId, used_cpu: u.cpu, used_memory: u.memory, used_gpu: u.gpu, used_agents: u.agents, used_running: u.running })
          .execute();
      }
    },
  },
  {
    id: '0004_secrets_egress_audit',
    async up(db, ctx) {
      await db.schema
        .createTable('secrets')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('ciphertext', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('secrets_pk', ['tenant_id', 'name'])
        .execute();
      await db.schema
        .createTable('egress_audit')
        .addColumn('id', ctx.autoIncrementType, (c) => (ctx.kind === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('time', 'bigint', (c) => c.notNull())
        .addColumn('agent_id', 'text')
        .addColumn('tenant_id', 'text')
        .addColumn('source_ip', 'text', (c) => c.notNull())
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('port', 'integer')
        .addColumn('decision', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('detail', 'text')
        .addColumn('bytes_up', 'bigint', (c) => c.notNull())
        .addColumn('bytes_down', 'bigint', (c) => c.notNull())
        .addColumn('duration_ms', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('egress_audit_agent_idx').on('egress_audit').columns(['agent_id', 'id']).execute();
      await db.schema.createIndex('egress_audit_time_idx').on('egress_audit').column('time').execute();
    },
  },
  {
    id: '0005_tenant_min_isolation',
    async up(db) {
      // Null: the tenant has no minimum of its own (the platform's still applies).
      await db.schema.alterTable('tenants').addColumn('min_isolation', 'text').execute();
    },
  },
  {
    id: '0006_agents_phase_id_index',
    async up(db) {
      // The usage meter pages Running agents by id every interval: without this index each
      // page scanned and sorted the table (measured 5.7 ms a page at 20,000 agents).
      await db.schema.createIndex('agents_phase_id').on('agents').columns(['phase', 'id']).execute();
    },
  },
  {
    id: '0007_drop_agents_phase_index',
    async up(db) {
      // (phase, id) serves every lookup by phase; the phase-only index was one more B-tree
      // to rewrite on each phase change (three per agent on the way to Running).
      await db.schema.dropIndex('agents_phase_idx').execute();
    },
  },
  {
    id: '0008_agents_tenant_created_index',
    async up(db) {
      // Every API list is scoped to a tenant and ordered by (created_at, id): walk that
      // order within the tenant instead of sorting all of its agents for every page. The
      // control plane's own passes walk ids (scanAgents), so the global order is not needed.
      await db.schema.dropIndex('agents_created_at_id_idx').execute();
      await db.schema.createIndex('agents_tenant_created_id').on('agents').columns(['tenant_id', 'created_at', 'id']).execute();
    },
  },
  {
    id: '0009_leader_fence',
    async up(db) {
      // One row: the largest leader fencing token any replica has recorded. Controller
      // writes carrying a smaller token come from a deposed leader and are refused
      // (Store.recordFencingToken). Token 0: no leader has recorded one yet.
      await db.schema
        .createTable('leader_fence')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('token', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('leader_fence').values({ id: 1, token: 0 }).execute();
    },
  },
];

/**
 * Applies the pending migrations of `migrations` in one transaction. Concurrent
 * callers (several processes starting at once) are serialised by the dialect's
 * `prepareMigration` lock, so each migration runs exactly once.
 * Returns the ids applied by this call.
 */
export async function applyMigrations(dialect: StoreDialect, migrations: readonly Migration[] = MIGRATIONS, nowMs: () => number = Date.now): Promise<string[]> {
  const ctx: MigrationContext = { kind: dialect.kind, autoIncrementType: dialect.autoIncrementType };
  return dialect.db.connection().execute(async (conn) => {
    await sql.raw(dialect.beginWriteSql).execute(conn);
    try {
      await dialect.prepareMigration(conn);
      await conn.schema
        .createTable('schema_migrations')
        .ifNotExists()
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('applied_at', 'bigint', (c) => c.notNull())
        .execute();
      const done = new Set((await conn.selectFrom('schema_migrations').select('id').execute()).map((r) => r.id));
      const applied: string[] = [];
      for (const migration of migrations) {
        if (done.has(migration.id)) continue;
        await migration.up(conn as Kysely<any>, ctx);
        await conn.insertInto('schema_migrations').values({ id: migration.id, applied_at: nowMs() }).execute();
        applied.push(migration.id);
      }
      await sql`commit`.execute(conn);
      return applied;
    } catch (err) {
      await sql`rollback`.execute(conn).catch(() => undefined);
      throw err;
    }
  });
}
