import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommitQueue } from './group-commit-queue.js';
import { syncExecutorOf, type SyncExecute } from './held-connection.js';
import { PreparedQuery } from './prepared-query.js';

interface Db {
  t: { k: string };
}

describe('GroupCommitQueue (on in-memory SQLite)', () => {
  let db: Kysely<Db>;
  let statements: string[];

  beforeEach(async () => {
    statements = [];
    db = new Kysely<Db>({
      dialect: new SqliteDialect({ database: new BetterSqlite3(':memory:') }),
      log: (event) => {
        if (event.level === 'query') statements.push(event.query.sql);
      },
    });
    await sql`create table t (k text primary key)`.execute(db);
    statements = [];
  });
  afterEach(async () => {
    await db.destroy();
  });

  const insert = (k: string) => (conn: Kysely<any>) => (conn as Kysely<Db>).insertInto('t').values({ k }).execute().then(() => k);
  const keys = async (): Promise<string[]> => (await db.selectFrom('t').select('k').orderBy('k').execute()).map((r) => r.k);

  it('commits concurrent writes in one transaction and answers each with its own result', async () => {
    const queue = new GroupCommitQueue(db, 'begin immediate');
    const results = await Promise.all(['a', 'b', 'c', 'd'].map((k) => queue.run(insert(k))));
    expect(results).toEqual(['a', 'b', 'c', 'd']);
    expect(statements.filter((s) => s === 'begin immediate')).toHaveLength(1);
    expect(statements.filter((s) => s === 'commit')).toHaveLength(1);
    expect(await keys()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('rolls back a failing write alone; the rest of its batch commits', async () => {
    const queue = new GroupCommitQueue(db, 'begin immediate');
    const failing = async (conn: Kysely<any>): Promise<never> => {
      await insert('half-done')(conn);
      throw new Error('boom');
    };
    const outcomes = await Promise.allSettled([queue.run(insert('a')), queue.run(failing), queue.run(insert('a')), queue.run(insert('b'))]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect(String((outcomes[1] as PromiseRejectedResult).reason)).toContain('boom');
    expect(String((outcomes[2] as PromiseRejectedResult).reason)).toContain('UNIQUE');
    expect(await keys()).toEqual(['a', 'b']);
  });

  it('rolls back a failing write that is alone in its batch', async () => {
    const queue = new GroupCommitQueue(db, 'begin immediate');
    await expect(
      queue.run(async (conn) => {
        await insert('x')(conn);
        throw new Error('nope');
      }),
    ).rejects.toThrow('nope');
    expect(await keys()).toEqual([]);
  });

  it('answers nobody before COMMIT, and rejects the whole batch when COMMIT fails', async () => {
    const queue = new GroupCommitQueue(db, 'begin immediate');
    // A deferred foreign key fails only at COMMIT.
    await sql`create table child (p text references t(k) deferrable initially deferred)`.execute(db);
    await sql`pragma foreign_keys = on`.execute(db);
    const outcomes = await Promise.allSettled([
      queue.run(insert('ok')),
      queue.run((conn) => sql`insert into child (p) values ('missing')`.execute(conn)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    expect(await keys()).toEqual([]);
  });

  it('respects maxBatch and idle() waits for queued writes', async () => {
    const queue = new GroupCommitQueue(db, 'begin immediate', { maxBatch: 2 });
    const pending = ['a', 'b', 'c', 'd', 'e'].map((k) => queue.run(insert(k)));
    await queue.idle();
    expect(await keys()).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(statements.filter((s) => s === 'commit')).toHaveLength(3);
    await Promise.all(pending);
  });

  describe('with a synchronous executor (held connection)', () => {
    let raw: BetterSqlite3.Database;
    let direct: string[];
    let executeSync: SyncExecute;
    beforeEach(async () => {
      raw = new BetterSqlite3(':memory:');
      await db.destroy();
      statements = [];
      db = new Kysely<Db>({ dialect: new SqliteDialect({ database: raw }), log: (event) => void (event.level === 'query' && statements.push(event.query.sql)) });
      await sql`create table t (k text primary key)`.execute(db);
      statements = [];
      direct = [];
      executeSync = (query) => {
        direct.push(query.sql);
        const stmt = raw.prepare(query.sql);
        if (stmt.reader) return { rows: stmt.all(query.parameters as unknown[]) as never[] };
        const info = stmt.run(query.parameters as unknown[]);
        return { rows: [], numAffectedRows: BigInt(info.changes) };
      };
    });

    // PreparedQuery is the store's hot path; it goes to the driver when its connection is held.
    const put = new PreparedQuery<{ k: string }, unknown>((b, p) => (b as unknown as Kysely<Db>).insertInto('t').values({ k: p('k') }) as never);
    const prepared = (k: string) => (conn: Kysely<any>) => put.execute(conn, 'sqlite', { k }).then(() => k);

    it('runs the batch statements and prepared queries on the driver, Kysely-built ones through Kysely, in one transaction', async () => {
      const queue = new GroupCommitQueue(db, 'begin immediate', { executeSync });
      let heldDuringBatch: boolean | undefined;
      const results = await Promise.all([
        queue.run(prepared('a')),
        queue.run(insert('b')),
        queue.run(async (conn) => {
          heldDuringBatch = syncExecutorOf(conn) !== undefined;
          return prepared('c')(conn);
        }),
      ]);
      expect(results).toEqual(['a', 'b', 'c']);
      expect(heldDuringBatch).toBe(true);
      expect(direct.filter((q) => q === 'begin immediate')).toHaveLength(1);
      expect(direct.filter((q) => q === 'commit')).toHaveLength(1);
      expect(direct.filter((q) => q.startsWith('insert'))).toHaveLength(2);
      // Only the Kysely-built insert went through Kysely.
      expect(statements.filter((q) => q.startsWith('insert'))).toHaveLength(1);
      expect(await keys()).toEqual(['a', 'b', 'c']);
    });

    it('rolls back a failing write alone and releases the connection after the batch', async () => {
      const queue = new GroupCommitQueue(db, 'begin immediate', { executeSync });
      let conn: Kysely<any> | undefined;
      const outcomes = await Promise.allSettled([
        queue.run(prepared('a')),
        queue.run(async (c) => {
          conn = c;
          await prepared('half')(c);
          throw new Error('boom');
        }),
        queue.run(prepared('a')),
        queue.run(prepared('b')),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
      expect(String((outcomes[2] as PromiseRejectedResult).reason)).toContain('UNIQUE');
      expect(await keys()).toEqual(['a', 'b']);
      expect(syncExecutorOf(conn!)).toBeUndefined();
    });
  });
});
