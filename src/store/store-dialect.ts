import type { Expression, Kysely, SqlBool } from 'kysely';
import type { Database } from './schema.js';
import type { SyncExecute } from './held-connection.js';

/**
 * What differs between the SQL databases behind KyselyStore. Everything else
 * (queries, migrations, mapping) is shared; an adapter supplies only this.
 */
export interface StoreDialect {
  /** "sqlite" | "postgres"; exposed as Store.kind. */
  readonly kind: 'sqlite' | 'postgres';
  readonly db: Kysely<Database>;
  /** SQL that opens a transaction which will write (SQLite: take the write lock up front). */
  readonly beginWriteSql: string;
  /**
   * Runs first inside the migration transaction, before anything else touches the
   * schema: serialises concurrent migrators (PostgreSQL advisory lock) and creates
   * the schema when the adapter owns one.
   */
  prepareMigration(conn: Kysely<Database>): Promise<void>;
  /**
   * True when the database has a single writer connection (SQLite): concurrent
   * writes then queue anyway, and committing them in groups is much cheaper.
   */
  readonly singleWriter: boolean;
  /**
   * Runs compiled SQL synchronously on the single writer connection (SQLite), for the
   * group-commit queue's held batches (held-connection.ts). Absent on PostgreSQL.
   */
  readonly executeSync?: SyncExecute | undefined;
  /** SQL type of an auto-incrementing integer primary key. */
  readonly autoIncrementType: 'integer' | 'bigserial';
  /** A predicate true when the row's JSON `labels` column has every given label. */
  labelsMatch(labels: Record<string, string>): Expression<SqlBool>;
  /** True when the driver error is a unique-constraint violation. */
  isUniqueViolation(err: unknown): boolean;
  /** True when the driver error means the database cannot be reached or is busy/closed. */
  isUnavailable(err: unknown): boolean;
  /** Releases connections and files. */
  destroy(): Promise<void>;
}
