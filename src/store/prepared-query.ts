import type { CompiledQuery, Compilable, Kysely, QueryResult } from 'kysely';
import type { Database } from './schema.js';
import { idleExecutorOf, syncExecutorOf } from './held-connection.js';

/** The SQL dialects a KyselyStore speaks; compiled SQL differs between them (`?` vs `$1`). */
export type SqlKind = 'sqlite' | 'postgres';

/** Stands in for an argument while the query is built; returns a marker, typed as the argument. */
export type Param<A> = <K extends keyof A & string>(name: K) => A[K];

type Slot = { arg: string } | { value: unknown };

interface Compiled {
  sql: string;
  slots: Slot[];
  query: CompiledQuery['query'];
}

// NUL cannot occur in an identifier or in the SQL Kysely writes, so no real value collides.
const MARKER = '\u0000prepared-query-arg:';

/**
 * A hot query built and compiled by Kysely once per dialect, then run with fresh
 * arguments. Kysely otherwise rebuilds and recompiles every query on every call
 * (immutable operation nodes, object freezing, visitor passes): on the store's hot
 * path (createAgent, updateAgent, getAgent, appendEvent) that cost more CPU than
 * SQLite took to run the statements.
 *
 * The builder receives `p`, which stands in for each argument; constants the builder
 * writes itself (the `1` of `version + 1`) stay constants. The query must have a fixed
 * shape: one set of columns, no branches on argument values. An argument must never
 * be `undefined` (Kysely would drop the column; here the driver would see undefined):
 * pass `null` for SQL NULL.
 *
 * Plugins are not re-applied to results; the store uses none.
 */
export class PreparedQuery<A extends Record<string, unknown>, R> {
  readonly #build: (db: Kysely<Database>, p: Param<A>) => Compilable<R>;
  readonly #compiled = new Map<SqlKind, Compiled>();

  constructor(build: (db: Kysely<Database>, p: Param<A>) => Compilable<R>) {
    this.#build = build;
  }

  /** Runs the query on `db` (a store's Kysely or a transaction's connection) of dialect `kind`. */
  execute(db: Kysely<Database>, kind: SqlKind, args: A): Promise<QueryResult<R>> {
    const c = this.#compiled.get(kind) ?? this.#compile(db, kind);
    const parameters = c.slots.map((s) => ('arg' in s ? args[s.arg] : s.value));
    const compiled = { sql: c.sql, parameters, query: c.query, queryId: { queryId: '' } } as CompiledQuery<R>;
    const sync = syncExecutorOf(db);
    if (sync) {
      try {
        return Promise.resolve(sync(compiled));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const idle = idleExecutorOf(db);
    if (idle) {
      try {
        const result = idle(compiled);
        if (result) return Promise.resolve(result);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return db.executeQuery<R>(compiled);
  }

  /** The first row, or undefined. */
  async first(db: Kysely<Database>, kind: SqlKind, args: A): Promise<R | undefined> {
    return (await this.execute(db, kind, args)).rows[0];
  }

  #compile(db: Kysely<Database>, kind: SqlKind): Compiled {
    const p = ((name: string) => `${MARKER}${name}`) as Param<A>;
    const compiled = this.#build(db, p).compile();
    const slots = compiled.parameters.map(
      (v): Slot => (typeof v === 'string' && v.startsWith(MARKER) ? { arg: v.slice(MARKER.length) } : { value: v }),
    );
    const c: Compiled = { sql: compiled.sql, slots, query: compiled.query };
    this.#compiled.set(kind, c);
    return c;
  }
}
