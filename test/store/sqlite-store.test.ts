import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import BetterSqlite3 from 'better-sqlite3';
import { InputError } from '../../src/domain/errors.js';
import { openStore } from '../../src/store/open-store.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { storeConformance } from '../conformance/store-conformance.js';

const root = mkdtempSync(join(tmpdir(), 'agent-platform-sqlite-'));
let opened = 0;

storeConformance(
  'sqlite (temp file)',
  async () => openSqliteStore(join(root, `store-${++opened}.db`)),
  async () => rmSync(root, { recursive: true, force: true }),
);

storeConformance('sqlite (temp file, each write its own commit)', async () =>
  openSqliteStore(join(root, `store-${++opened}.db`), { groupCommit: false }),
);

describe('sqlite store specifics', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agent-platform-sqlite-x-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('openStore without a URL creates <dataDir>/agent-platform.db in WAL mode with a busy timeout', async () => {
    const dataDir = join(dir, 'nested', 'data');
    const store = await openStore(undefined, dataDir);
    try {
      expect(store.kind).toBe('sqlite');
      await store.putSettingIfAbsent('k', 'v');
    } finally {
      await store.close();
    }
    const file = join(dataDir, 'agent-platform.db');
    expect(existsSync(file)).toBe(true);
    const raw = new BetterSqlite3(file, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.prepare('select value from settings where key = ?').pluck().get('k')).toBe('v');
      expect(raw.prepare('select id from schema_migrations').pluck().all()).toEqual(MIGRATIONS.map((m) => m.id));
    } finally {
      raw.close();
    }
  });

  it('sets busy_timeout on its connection', async () => {
    const file = join(dir, 'busy.db');
    const store = openSqliteStore(file, { busyTimeoutMs: 1234 });
    await store.migrate();
    // Hold the write lock from another connection: a write must wait about busyTimeoutMs, then fail as unavailable.
    const other = new BetterSqlite3(file);
    other.exec('begin immediate');
    const started = Date.now();
    try {
      const err = await store.putSettingIfAbsent('x', 'y').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as { code?: string }).code).toBe('STORE_UNAVAILABLE');
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    } finally {
      other.exec('rollback');
      other.close();
      await store.close();
    }
  });

  it('sqlite::memory: and sqlite:/path select SQLite; other schemes are refused', async () => {
    const mem = await openStore('sqlite::memory:', dir);
    expect(mem.kind).toBe('sqlite');
    expect((await mem.createAgent(newAgentFixture())).created).toBe(true);
    await mem.close();

    const file = join(dir, 'explicit.db');
    const explicit = await openStore(`sqlite:${file}`, '/nonexistent-data-dir');
    await explicit.close();
    expect(existsSync(file)).toBe(true);

    const file2 = join(dir, 'explicit2.db');
    const triple = await openStore(`sqlite://${file2}`, '/nonexistent-data-dir');
    await triple.close();
    expect(existsSync(file2)).toBe(true);

    const err = await openStore('mysql://user:secret@host/db', dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe('INVALID_STORE_URL');
    expect((err as InputError).message).not.toContain('secret');
  });

  it('two processes on one file migrate once and share idempotency keys', async () => {
    // Real processes: better-sqlite3 waits for a lock synchronously, so two stores on
    // one file inside one process would block each other's event loop.
    const file = join(dir, 'shared.db');
    const script = join(dir, 'child.mts');
    const storeModule = pathToFileURL(join(process.cwd(), 'src/store/sqlite-store.ts')).href;
    writeFileSync(
      script,
      `import { openSqliteStore } from ${JSON.stringify(storeModule)};
const store = openSqliteStore(process.argv[2]);
await store.migrate();
const results = [];
for (let i = 0; i < 20; i++) {
  const r = await store.createAgent({ id: crypto.randomUUID(), tenantId: 't', name: 'shared', labels: {},
    spec: { image: 'busybox', command: [], args: [], env: {}, resources: { cpuMillicores: 1, memoryMiB: 1, gpu: 0, cpuLimitMillicores: 1, memoryLimitMiB: 1 },
      restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0, nodeSelector: {}, tolerations: [] },
    desired: 'running', status: { phase: 'Pending', restarts: 0, phaseSince: 1 }, createdAt: Date.now() }, { key: 'k', requestHash: 'h' });
  results.push({ id: r.agent.id, created: r.created });
}
await store.close();
console.log(JSON.stringify(results));
`,
    );
    const runChild = () =>
      new Promise<{ id: string; created: boolean }[]>((resolve, reject) => {
        execFile(process.execPath, ['--import', 'tsx', script, file], { cwd: process.cwd(), timeout: 60_000 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`child failed: ${err.message}\n${stderr}`));
          else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as { id: string; created: boolean }[]);
        });
      });
    const [a, b] = await Promise.all([runChild(), runChild()]);
    const all = [...a, ...b];
    expect(all.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(all.map((r) => r.id)).size).toBe(1);
    const raw = new BetterSqlite3(file, { readonly: true });
    try {
      expect(raw.prepare('select count(*) from agents').pluck().get()).toBe(1);
      expect(raw.prepare('select id from schema_migrations').pluck().all()).toEqual(MIGRATIONS.map((m) => m.id));
    } finally {
      raw.close();
    }
  }, 90_000);
});

function newAgentFixture(overrides: { name?: string } = {}) {
  return {
    id: crypto.randomUUID(),
    tenantId: 't',
    name: overrides.name ?? `a-${crypto.randomUUID().slice(0, 8)}`,
    labels: {},
    spec: {
      image: 'busybox',
      command: [],
      args: [],
      env: {},
      resources: { cpuMillicores: 100, memoryMiB: 64, gpu: 0, cpuLimitMillicores: 100, memoryLimitMiB: 64 },
      restartPolicy: 'Never' as const,
      schedulingPolicy: 'spread' as const,
      priority: 0,
      nodeSelector: {},
      tolerations: [],
    },
    desired: 'running' as const,
    status: { phase: 'Pending' as const, restarts: 0, phaseSince: 1 },
    createdAt: Date.now(),
  };
}
