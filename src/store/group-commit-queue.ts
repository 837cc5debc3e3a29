import { CompiledQuery, type Kysely } from 'kysely';
import { holdConnection, releaseConnection, type SyncExecute } from './held-connection.js';

// Compiled once: a batch of 256 writes runs 3 of these per write.
const SAVEPOINT = CompiledQuery.raw('savepoint group_commit_write');
const ROLLBACK_TO_SAVEPOINT = CompiledQuery.raw('rollback to group_commit_write');
const RELEASE_SAVEPOINT = CompiledQuery.raw('release group_commit_write');
const COMMIT = CompiledQuery.raw('commit');
const ROLLBACK = CompiledQuery.raw('rollback');

/** Captured at load so that fake timers installed later (tests) cannot stall the store. */
const runAfterPendingIo: (fn: () => void) => void = globalThis.setImmediate.bind(globalThis);

export interface GroupCommitOptions {
  /**
   * Most writes committed together.
   * @default 256
   */
  maxBatch?: number | undefined;
  /**
   * Runs compiled SQL at once on the single connection (SQLite's driver is synchronous).
   * When given, the batch's own statements and the prepared hot statements of its writes
   * skip Kysely's promise chain (held-connection.ts).
   */
  executeSync?: SyncExecute | undefined;
}

interface QueuedWrite {
  op: (db: Kysely<any>) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Commits concurrent writes in one transaction ("group commit"). On SQLite a commit
 * costs about as much as the writes it holds (each touched page is appended to the
 * WAL), so committing 64 agents at once is several times faster than 64 commits.
 *
 * Each write runs inside its own SAVEPOINT: a failing write is rolled back alone and
 * rejects alone; the others commit. Callers are answered only after COMMIT, so no
 * caller sees success for a write that is not durable. A batch starts on the next
 * setImmediate, after the I/O callbacks (HTTP requests) of the current loop turn
 * have queued their writes; an idle store pays one loop turn of latency.
 *
 * Only for a database with one writer connection (SQLite): the batch holds it.
 */
export class GroupCommitQueue {
  readonly #db: Kysely<any>;
  readonly #begin: CompiledQuery;
  readonly #maxBatch: number;
  readonly #executeSync: SyncExecute | undefined;
  #queue: QueuedWrite[] = [];
  #scheduled = false;
  #draining: Promise<void> | undefined;

  constructor(db: Kysely<any>, beginSql: string, options: GroupCommitOptions = {}) {
    this.#db = db;
    this.#begin = CompiledQuery.raw(beginSql);
    this.#maxBatch = Math.max(1, options.maxBatch ?? 256);
    this.#executeSync = options.executeSync;
  }

  /** Runs `op` in the next batch; resolves with its result once the batch has committed. */
  run<T>(op: (db: Kysely<any>) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ op, resolve: resolve as (value: unknown) => void, reject });
      this.#schedule();
    });
  }

  /** Resolves once every queued write has been committed or rejected. */
  async idle(): Promise<void> {
    while (this.#draining || this.#scheduled || this.#queue.length > 0) {
      if (this.#draining) await this.#draining;
      else await new Promise<void>((resolve) => runAfterPendingIo(resolve));
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#draining) return;
    this.#scheduled = true;
    runAfterPendingIo(() => {
      this.#scheduled = false;
      this.#draining = this.#drain().finally(() => {
        this.#draining = undefined;
        // Writes queued by the callers we just answered start the next round.
        if (this.#queue.length > 0) this.#schedule();
      });
    });
  }

  /** Never rejects: every failure is delivered to the callers of the batch. */
  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      let outcomes: Outcome[];
      try {
        outcomes = await this.#commit(batch);
      } catch (error) {
        for (const write of batch) write.reject(error);
        continue;
      }
      batch.forEach((write, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) write.resolve(outcome.value);
        else write.reject(outcome.error);
      });
    }
  }

  #commit(batch: QueuedWrite[]): Promise<Outcome[]> {
    return this.#db.connection().execute(async (conn) => {
      const sync = this.#executeSync;
      if (!sync) return this.#commitOn(conn, batch, (q) => conn.executeQuery(q));
      holdConnection(conn, sync);
      try {
        return await this.#commitOn(conn, batch, async (q) => sync(q));
      } finally {
        releaseConnection(conn);
      }
    });
  }

  async #commitOn(conn: Kysely<any>, batch: QueuedWrite[], run: (query: CompiledQuery) => Promise<unknown>): Promise<Outcome[]> {
      await run(this.#begin);
      const outcomes: Outcome[] = [];
      try {
        if (batch.length === 1) {
          // Alone in the batch: the transaction is the write's own, no savepoint needed.
          try {
            outcomes.push({ ok: true, value: await batch[0]!.op(conn) });
          } catch (error) {
            await run(ROLLBACK);
            return [{ ok: false, error }];
          }
        } else {
          for (const write of batch) {
            await run(SAVEPOINT);
            try {
              outcomes.push({ ok: true, value: await write.op(conn) });
            } catch (error) {
              // If SQLite already rolled back the whole transaction (I/O error, ...),
              // this throws and the batch fails as a whole, which is then the truth.
              await run(ROLLBACK_TO_SAVEPOINT);
              outcomes.push({ ok: false, error });
            }
            await run(RELEASE_SAVEPOINT);
          }
        }
        await run(COMMIT);
        return outcomes;
      } catch (error) {
        await run(ROLLBACK).catch(() => undefined);
        throw error;
      }
  }
}
