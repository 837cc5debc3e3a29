import pg from 'pg';
import { Kysely, PostgresDialect, sql, type Expression, type SqlBool } from 'kysely';
import { InputError } from '../domain/errors.js';
import { KyselyStore, type KyselyStoreOptions } from './kysely-store.js';
import type { Database } from './schema.js';
import type { StoreDialect } from './store-dialect.js';
import type { Store } from './store.js';

export interface PostgresStoreOptions extends KyselyStoreOptions {
  /**
   * Schema that holds the tables; created by migrate() when missing. Lets several
   * installations (or test runs) share one database.
   * @default the server's search_path (normally "public")
   */
  schema?: string | undefined;
  /**
   * Most connections the pool opens.
   * @default 10
   */
  maxConnections?: number | undefined;
  /**
   * How long to wait for a connection before the call fails with STORE_UNAVAILABLE.
   * @default 5000
   */
  connectTimeoutMs?: number | undefined;
}

const INT8_OID = 20;
// Timestamps (ms) and event ids are bigint; every value we store fits in a double.
const typeParsers = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** Opens a PostgreSQL-backed Store on a pg Pool. Call migrate() before use. */
export function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Store {
  const schema = options.schema;
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new InputError(`PostgreSQL schema name "${schema}" must be lower-case letters, digits and underscores`, { schema }, 'INVALID_STORE_SCHEMA');
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    types: typeParsers,
    ...(schema !== undefined ? { options: `-c search_path=${schema}` } : {}),
  });
  // An idle client losing its connection emits 'error' on the pool; unhandled, that
  // would crash the process. The next query (or ping) reports STORE_UNAVAILABLE instead.
  pool.on('error', () => undefined);
  // A client checked out for a transaction can lose its connection between statements
  // too (the server ends a fenced write idle past the fencing timeout: its process was
  // paused). pg-pool listens only on idle clients, and an unheard 'error' would crash the
  // process; the transaction's next statement fails with STORE_UNAVAILABLE instead.
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return new KyselyStore(postgresDialect(db, schema), options);
}

function postgresDialect(db: Kysely<Database>, schema: string | undefined): StoreDialect {
  return {
    kind: 'postgres',
    db,
    beginWriteSql: 'begin',
    async prepareMigration(conn) {
      // Transaction-scoped: released at commit/rollback, even if this process dies.
      // Keyed by schema so that migrators of different schemas do not wait for each other.
      await sql`select pg_advisory_xact_lock(hashtext(${`agent-platform:migrate:${schema ?? ''}`}))`.execute(conn);
      if (schema !== undefined) await sql`create schema if not exists ${sql.id(schema)}`.execute(conn);
    },
    singleWriter: false,
    autoIncrementType: 'bigserial',
    labelsMatch: (labels: Record<string, string>): Expression<SqlBool> => sql<SqlBool>`(agents.labels::jsonb @> ${JSON.stringify(labels)}::jsonb)`,
    isUniqueViolation: (err) => pgCode(err) === '23505',
    isUnavailable(err) {
      const code = pgCode(err);
      if (code === undefined) return /Connection terminated|not queryable|timeout exceeded when trying to connect|Cannot use a pool after calling end|driver has already been destroyed/i.test(errorMessage(err));
      // Node socket errors, connection exceptions (08), shutdowns (57P0x), too many connections (53300).
      return /^E[A-Z]+$/.test(code) || code.startsWith('08') || /^57P0[1-3]$/.test(code) || code === '53300';
    },
    destroy: () => db.destroy(),
  };
}

const pgCode = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
