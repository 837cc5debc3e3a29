/**
 * The bootstrap admin token as a user meets it: `agent-platform serve` in a process of its
 * own, without AGENT_PLATFORM_ADMIN_TOKEN and with an empty data dir, prints a generated
 * token once, keeps only its hash, accepts it, and after a restart prints nothing and
 * still accepts the same token.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN_SETTING, sha256 } from '../../src/api/auth.js';
import { SQLITE_FILE_NAME } from '../../src/store/open-store.js';
import { freePort, startPlatformProcess, type PlatformProcess } from '../crash/platform-process.js';
import { requireDocker } from '../helpers/require-docker.js';

const hasDocker = await requireDocker();

const BANNER = 'Generated admin token (shown once, stored hashed)';

/** Every file under `dir`, recursively (the SQLite file, its WAL, the secret key file...). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

const countOf = (haystack: string, needle: string): number => haystack.split(needle).length - 1;

/**
 * The process's output once its start-up line is in: /ready can answer before the parent
 * has read the pipe that carries what was written just before it.
 */
async function startupOutput(proc: PlatformProcess): Promise<string> {
  const deadline = Date.now() + 10_000;
  while (!proc.output().includes('agent-platform listening on') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return proc.output();
}

describe.skipIf(!hasDocker)('admin token bootstrap (agent-platform serve as a process)', () => {
  let dataDir: string;
  let proc: PlatformProcess | undefined;

  /**
   * Empty values unset what this shell may export (loadConfig treats '' as unset): no
   * admin token, SQLite in `dataDir`, no Redis, the local Docker host as the one node.
   * Logs stay at info so that a token leaking into them would be seen.
   */
  const start = async (): Promise<PlatformProcess> =>
    startPlatformProcess(
      {
        AGENT_PLATFORM_ADMIN_TOKEN: '',
        AGENT_PLATFORM_DATABASE_URL: '',
        AGENT_PLATFORM_REDIS_URL: '',
        AGENT_PLATFORM_NODES: '',
        AGENT_PLATFORM_NODES_FILE: '',
        AGENT_PLATFORM_DATA_DIR: dataDir,
        AGENT_PLATFORM_LOG_LEVEL: 'info',
      },
      await freePort(),
    );

  const listAgents = async (baseUrl: string, token: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(`${baseUrl}/api/v1/agents`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, text: await res.text() };
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ap-token-'));
  });

  afterAll(async () => {
    await proc?.stop();
    await rm(dataDir, { recursive: true, force: true });
  }, 30_000);

  it('prints a generated token once, stores only its hash, accepts it, and keeps it across a restart', async () => {
    proc = await start();
    const firstOutput = await startupOutput(proc);
    // The output buffer keeps the last 8000 characters: all of it is here, so counts are exact.
    expect(firstOutput.length, firstOutput).toBeLessThan(8000);
    const printed = /export AGENT_PLATFORM_ADMIN_TOKEN=(\S+)/.exec(firstOutput)?.[1];
    expect(printed, `no token line in:\n${firstOutput}`).toBeDefined();
    const token = printed!;
    expect(token).toMatch(/^ap_[A-Za-z0-9_-]{32}$/);
    expect(countOf(firstOutput, BANNER)).toBe(1);
    // Once: not repeated by the structured logs either.
    expect(countOf(firstOutput, token), firstOutput).toBe(1);

    expect(await listAgents(proc.baseUrl, token)).toMatchObject({ status: 200 });
    const wrong = await listAgents(proc.baseUrl, `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`);
    expect(wrong.status, wrong.text).toBe(401);
    expect((JSON.parse(wrong.text) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');

    await proc.stop();
    proc = undefined;

    // Only the hash is kept: the settings row holds sha256(token), and no file of the
    // data dir (database, WAL, secret key file) contains the token itself.
    const files = await filesUnder(dataDir);
    expect(files.map((f) => f.slice(dataDir.length + 1))).toContain(SQLITE_FILE_NAME);
    for (const file of files) expect((await readFile(file)).includes(Buffer.from(token)), `${file} contains the plain token`).toBe(false);
    const db = new Database(join(dataDir, SQLITE_FILE_NAME), { readonly: true });
    try {
      const row = db.prepare('select value from settings where key = ?').get(ADMIN_TOKEN_SETTING) as { value: string } | undefined;
      expect(row?.value).toBe(sha256(token));
      const values = db.prepare('select value from settings').all() as { value: string }[];
      for (const { value } of values) expect(value).not.toContain(token);
    } finally {
      db.close();
    }

    // Restart on the same data dir: nothing printed, the first token still works.
    proc = await start();
    const secondOutput = await startupOutput(proc);
    expect(secondOutput).toContain('agent-platform listening on');
    expect(secondOutput).not.toContain(BANNER);
    expect(secondOutput).not.toContain('export AGENT_PLATFORM_ADMIN_TOKEN');
    expect(secondOutput).not.toContain(token);
    expect(await listAgents(proc.baseUrl, token)).toMatchObject({ status: 200 });
  }, 120_000);
});
