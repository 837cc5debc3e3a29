import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, sql, type CompiledQuery, type Expression, type QueryResult, type SqlBool } from 'kysely';
import { KyselyStore, type KyselyStoreOptions } from './kysely-store.js';
import type { Database } from './schema.js';
import type { StoreDialect } from './store-dialect.js';
import { runWhenIdle } from './held-connection.js';
import type { Store } from './store.js';

export interface SqliteStoreOptions extends KyselyStoreOptions {
  /**
   * How long a writer waits for another process's write lock before SQLITE_BUSY.
   * @default 5000
   */
  busyTimeoutMs?: number | undefined;
  /**
   * Prepared statements kept for reuse. Kysely prepares every query afresh; reusing
   * statements by SQL text saves the parse on the hot path (createAgent, updateAgent).
   * @default 256
   */
  statementCacheSize?: number | undefined;
  /**
   * Most memory SQLite keeps as its page cache. Beyond it pages come from the operating
   * system's file cache (no disk read, but not counted in the process's RSS).
   * @default 16
   */
  cacheMiB?: number | undefined;
}

/**
 * Opens (creating if needed) a SQLite database at `path` (":memory:" for a private
 * in-memory one) as a Store. Call migrate() before use.
 *
 * WAL lets readers run while one writer writes; synchronous=NORMAL in WAL mode
 * skips the fsync per commit (a power cut may lose the last commits, never corrupt
 * the file) — the price of thousands of writes per second.
 */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Store {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const raw = new BetterSqlite3(path);
  raw.pragma('journal_mode = WAL');
  raw.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
  raw.pragma('synchronous = NORMAL');
  raw.pragma('foreign_keys = ON');
  // Negative: a size in KiB. SQLite's own default is 2 MiB.
  raw.pragma(`cache_size = -${Math.max(1, Math.floor((options.cacheMiB ?? 16) * 1024))}`);
  const statements = withStatementCache(raw, options.statementCacheSize ?? 256);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: statements }) });
  const dialect = sqliteDialect(db, statements);
  const executeSync = dialect.executeSync!;
  runWhenIdle(db, (query) => (raw.inTransaction ? undefined : executeSync(query)));
  return new KyselyStore(dialect, options);
}

function sqliteDialect(db: Kysely<Database>, statements: { prepare(sql: string): RawStatement }): StoreDialect {
  return {
    kind: 'sqlite',
    db,
    executeSync: <R>(query: CompiledQuery<R>): QueryResult<R> => {
      // What Kysely's SqliteConnection.executeQuery does, without its promise.
      const stmt = statements.prepare(query.sql);
      if (stmt.reader) return { rows: stmt.all(query.parameters) as R[] };
      const { changes, lastInsertRowid } = stmt.run(query.parameters);
      return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
    },
    // IMMEDIATE takes the write lock at BEGIN (waiting up to busy_timeout), so a
    // transaction never fails later on a read-to-write lock upgrade.
    beginWriteSql: 'begin immediate',
    prepareMigration: async () => undefined,
    singleWriter: true,
    autoIncrementType: 'integer',
    labelsMatch(labels: Record<string, string>): Expression<SqlBool> {
      // json_each instead of a JSON path: any key (dots, slashes, quotes) matches literally.
      const clauses = Object.entries(labels).map(
        ([key, value]) => sql<SqlBool>`exists (select 1 from json_each(agents.labels) as l where l.key = ${key} and l.type = 'text' and l.value = ${value})`,
      );
      return sql<SqlBool>`(${sql.join(clauses, sql` and `)})`;
    },
    isUniqueViolation: (err) => sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE' || sqliteCode(err) === 'SQLITE_CONSTRAINT_PRIMARYKEY',
    isUnavailable(err) {
      const code = sqliteCode(err);
      if (code === undefined) return err instanceof TypeError && /database connection is not open/.test(err.message);
      return /^SQLITE_(BUSY|LOCKED|CANTOPEN|IOERR|FULL|READONLY|NOTADB|CORRUPT)/.test(code);
    },
    destroy: () => db.destroy(),
  };
}

const sqliteCode = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' && err.code.startsWith('SQLITE_') ? err.code : undefined;

type RawDatabase = InstanceType<typeof BetterSqlite3>;
type RawStatement = ReturnType<RawDatabase['prepare']>;

/** The better-sqlite3 database as Kysely's SqliteDatabase, reusing prepared statements. */
function withStatementCache(raw: RawDatabase, capacity: number): { close(): void; prepare(sql: string): RawStatement } {
  const cache = new Map<string, RawStatement>();
  return {
    close: () => {
      cache.clear();
      raw.close();
    },
    prepare(text: string): RawStatement {
      const cached = cache.get(text);
      // A statement still iterating (a stream) cannot be reused; prepare a fresh one.
      if (cached && !cached.busy) return cached;
      const stmt = raw.prepare(text);
      if (capacity > 0) {
        // Oldest-first eviction (Map keeps insertion order); good enough, the hot set is small.
        if (cache.size >= capacity) cache.delete(cache.keys().next().value as string);
        cache.set(text, stmt);
      }
      return stmt;
    },
  };
}

