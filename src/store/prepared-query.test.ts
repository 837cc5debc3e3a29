import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, Kysely, SqliteDialect, sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { PreparedQuery } from './prepared-query.js';
import type { Database } from './schema.js';
import { runWhenIdle } from './held-connection.js';

describe('PreparedQuery', () => {
  it('compiles once and binds fresh arguments on every run, keeping the builder constants', async () => {
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: new BetterSqlite3(':memory:') }) });
    await sql`create table settings (key text primary key, value text not null)`.execute(db);
    let builds = 0;
    const put = new PreparedQuery<{ key: string; value: string }, unknown>((b, p) => {
      builds++;
      return b.insertInto('settings').values({ key: p('key'), value: p('value') });
    });
    const get = new PreparedQuery<{ key: string }, { value: string }>((b, p) => b.selectFrom('settings').select('value').where('key', '=', p('key')).where('value', '!=', 'hidden'));
    await put.execute(db, 'sqlite', { key: 'a', value: 'one' });
    await put.execute(db, 'sqlite', { value: 'two', key: 'b' });
    await put.execute(db, 'sqlite', { key: 'c', value: 'hidden' });
    expect(builds).toBe(1);
    expect(await get.first(db, 'sqlite', { key: 'a' })).toEqual({ value: 'one' });
    expect(await get.first(db, 'sqlite', { key: 'b' })).toEqual({ value: 'two' });
    // 'hidden' is the builder's constant, not an argument: the row is filtered out.
    expect(await get.first(db, 'sqlite', { key: 'c' })).toBeUndefined();
    await db.destroy();
  });

  it('runs on the store\'s Kysely synchronously while no transaction is open, and waits for an open one', async () => {
    const raw = new BetterSqlite3(':memory:');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: raw }) });
    await sql`create table settings (key text primary key, value text not null)`.execute(db);
    // As openSqliteStore registers it: straight to the driver unless a transaction is open.
    let direct = 0;
    runWhenIdle(db, (query) => {
      if (raw.inTransaction) return undefined;
      direct++;
      return { rows: raw.prepare(query.sql).all(query.parameters) as never[] };
    });
    const get = new PreparedQuery<{ key: string }, { value: string }>((b, p) => b.selectFrom('settings').select('value').where('key', '=', p('key')));

    // A writer holds the connection with an open transaction across an await, as a
    // group-commit batch does; the read issued meanwhile must not see its uncommitted row.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const order: string[] = [];
    const writer = db.connection().execute(async (conn) => {
      await conn.executeQuery(CompiledQuery.raw('begin immediate'));
      await conn.executeQuery(CompiledQuery.raw(`insert into settings (key, value) values ('k', 'uncommitted')`));
      await gate;
      await conn.executeQuery(CompiledQuery.raw(`update settings set value = 'committed' where key = 'k'`));
      await conn.executeQuery(CompiledQuery.raw('commit'));
      order.push('commit');
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(raw.inTransaction).toBe(true);
    const read = get.first(db, 'sqlite', { key: 'k' }).then((row) => {
      order.push('read');
      return row;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([]); // still waiting for the transaction
    release();
    expect(await read).toEqual({ value: 'committed' });
    await writer;
    expect(order).toEqual(['commit', 'read']);
    expect(direct).toBe(0);

    // Idle connection: answered by the driver directly.
    expect(await get.first(db, 'sqlite', { key: 'k' })).toEqual({ value: 'committed' });
    expect(direct).toBe(1);
    await db.destroy();
  });
});
