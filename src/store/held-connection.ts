import type { CompiledQuery, Kysely, QueryResult } from 'kysely';

/** Runs compiled SQL at once on a connection the caller holds (SQLite: the only one). */
export type SyncExecute = <R>(query: CompiledQuery<R>) => QueryResult<R>;

/**
 * Connections held by a GroupCommitQueue batch, with a synchronous executor for each.
 *
 * Kysely runs every statement through its executor, connection provider and driver,
 * a chain of promises that cost several times what SQLite takes to run the statement
 * (measured on the simulated-cluster bench: a 20,000-agent run spent about 5 s in the
 * store against about 1.5 s for the same statements on the bare driver). While a batch
 * holds the single SQLite connection nothing else can run on it, so the hot statements
 * (prepared-query.ts) and the batch's own savepoints may go straight to the driver.
 * Statements built by Kysely elsewhere in the batch still take Kysely's path on the
 * same connection; both see the same transaction.
 */
const held = new WeakMap<object, SyncExecute>();

export function holdConnection(conn: Kysely<any>, execute: SyncExecute): void {
  held.set(conn, execute);
}

export function releaseConnection(conn: Kysely<any>): void {
  held.delete(conn);
}

/** The synchronous executor of `db` while a batch holds it; undefined otherwise. */
export function syncExecutorOf(db: Kysely<any>): SyncExecute | undefined {
  return held.get(db);
}

/**
 * Runs compiled SQL at once when the connection has no transaction open; undefined when
 * it has one (the statement must then wait its turn through Kysely).
 */
export type IdleExecute = <R>(query: CompiledQuery<R>) => QueryResult<R> | undefined;

const idle = new WeakMap<object, IdleExecute>();

/**
 * Lets statements on the store's own Kysely (outside any batch) run synchronously while
 * no transaction is open on SQLite's single connection. A read then skips Kysely's
 * connection mutex and promise chain (about as costly as the read itself); with a
 * transaction open (a group-commit batch between its awaits) it would see uncommitted
 * rows, so then it queues behind the transaction as before.
 */
export function runWhenIdle(db: Kysely<any>, execute: IdleExecute): void {
  idle.set(db, execute);
}

/** The idle executor registered for `db` (the store's own Kysely), if any. */
export function idleExecutorOf(db: Kysely<any>): IdleExecute | undefined {
  return idle.get(db);
}
