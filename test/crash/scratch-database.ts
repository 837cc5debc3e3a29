import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A PostgreSQL database created for one test run. */
export interface ScratchDatabase {
  /** Connection URL of the new database. */
  readonly url: string;
  /** Drops it (disconnecting any client a killed platform left behind). */
  drop(): Promise<void>;
}

/** Whether PostgreSQL answers at `url`; the reason when it does not. */
export async function probePostgres(url: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates `ap_crash_<random>` next to the database `adminUrl` names. A whole
 * database (not a schema) because the server is configured by URL only
 * (AGENT_PLATFORM_DATABASE_URL), exactly as in production.
 */
export async function createScratchDatabase(adminUrl: string): Promise<ScratchDatabase> {
  const name = `ap_crash_${randomBytes(5).toString('hex')}`;
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  };
  await admin((c) => c.query(`create database "${name}"`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => admin((c) => c.query(`drop database if exists "${name}" with (force)`)).then(() => undefined),
  };
}
