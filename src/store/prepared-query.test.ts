import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { PreparedQuery } from './prepared-query.js';
import type { Database } from './schema.js';

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
});
