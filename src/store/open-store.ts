import { join } from 'node:path';
import { InputError } from '../domain/errors.js';
import { openPostgresStore } from './postgres-store.js';
import { openSqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

export interface OpenStoreOptions {
  /**
   * Apply pending migrations before returning.
   * @default true
   */
  migrate?: boolean | undefined;
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
  const store = selectStore(url, dataDir);
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

function selectStore(url: string | undefined, dataDir: string): Store {
  const text = url?.trim() ?? '';
  if (text === '') return openSqliteStore(join(dataDir, SQLITE_FILE_NAME));
  if (/^postgres(ql)?:\/\//i.test(text)) return openPostgresStore(text);
  if (/^sqlite:/i.test(text)) {
    let path = text.slice('sqlite:'.length);
    if (path === ':memory:') return openSqliteStore(':memory:');
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '') throw new InputError('store URL "sqlite:" names no file; use sqlite:/path/to/file.db or sqlite::memory:', { url: text }, 'INVALID_STORE_URL');
    return openSqliteStore(path);
  }
  // Only the scheme goes into the error: the rest of a URL may hold a password.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1] ?? '(none)';
  throw new InputError(`store URL scheme "${scheme}" is not supported; use postgres://, postgresql:// or sqlite:`, { scheme }, 'INVALID_STORE_URL');
}
