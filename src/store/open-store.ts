import { join } from 'node:path';
import { InputError } from '../domain/errors.js';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
import type { Store } from './store.js';

export interface OpenStoreOptions {
  /**
   * Apply pending migrations before returning.
   * @default true
   */
  migrate?: boolean | undefined;
  /** SQLite page cache (SqliteStoreOptions.cacheMiB); ignored on PostgreSQL. */
  sqliteCacheMiB?: number | undefined;
  /** PostgreSQL: KyselyStoreOptions.fencingTimeoutMs (about the leader lease TTL); ignored on SQLite. */
  fencingTimeoutMs?: number | undefined;
}

/** File name of the embedded database inside the data directory. */
export const SQLITE_FILE_NAME = 'agent-platform.db';

/**
 * Opens the Store that `url` names:
 * - `postgres://…` or `postgresql://…`: PostgreSQL;
 * - `sqlite::memory:`: a private in-memory SQLite database (tests);
 * - `sqlite:/path/file.db` (or `sqlite:///path/file.db`): SQLite at that file;
 * - undefined or empty: SQLite at `<dataDir>/agent-platform.db` (the directory is created).
 * Any other URL throws InputError(INVALID_STORE_URL) rather than silently using SQLite.
 */
export async function openStore(url: string | undefined, dataDir: string, options: OpenStoreOptions = {}): Promise<Store> {
  const store = await selectStore(url, dataDir, { cacheMiB: options.sqliteCacheMiB }, options.fencingTimeoutMs);
  if (options.migrate ?? true) {
    try {
      await store.migrate();
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  return store;
}

async function selectStore(url: string | undefined, dataDir: string, sqlite: SqliteStoreOptions, fencingTimeoutMs: number | undefined): Promise<Store> {
  const text = url?.trim() ?? '';
  if (text === '') return openSqliteStore(join(dataDir, SQLITE_FILE_NAME), sqlite);
  // pg is loaded only for PostgreSQL: the embedded platform does not carry it.
  if (/^postgres(ql)?:\/\//i.test(text)) return (await import('./postgres-store.js')).openPostgresStore(text, { fencingTimeoutMs });
  if (/^sqlite:/i.test(text)) {
    let path = text.slice('sqlite:'.length);
    if (path === ':memory:') return openSqliteStore(':memory:', sqlite);
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '') throw new InputError('store URL "sqlite:" names no file; use sqlite:/path/to/file.db or sqlite::memory:', { url: text }, 'INVALID_STORE_URL');
    return openSqliteStore(path, sqlite);
  }
  // Only the scheme goes into the error: the rest of a URL may hold a password.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1] ?? '(none)';
  throw new InputError(`store URL scheme "${scheme}" is not supported; use postgres://, postgresql:// or sqlite:`, { scheme }, 'INVALID_STORE_URL');
}
