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
