import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { secretKeyId } from '../../src/security/secret-cipher.js';
import { freePort, startPlatformProcess, type PlatformProcess } from '../crash/platform-process.js';
import { createScratchDatabase, probePostgres, type ScratchDatabase } from '../crash/scratch-database.js';
import { isCI, requireDocker } from '../helpers/require-docker.js';
import { PYTHON_IMAGE, sleep } from './security-harness.js';

/**
 * The documented rotation, end to end with real processes: a platform seals secrets with key A;
 * `agent-platform secrets rotate-key` (the operator's entry point, run as its own process
 * against the same data directory / database) re-seals them under key B while still opening
 * A; then a platform that knows only B reads them: into an agent's environment.
 */

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const pgAdminUrl = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ADMIN_TOKEN = `rot_${randomBytes(12).toString('hex')}`;

// Docker: the last step proves the read by starting an agent whose environment holds the secret.
const hasDocker = await requireDocker();
const pgProbe = await probePostgres(pgAdminUrl);
if (!pgProbe.ok && isCI) throw new Error(`CI=true but PostgreSQL at ${pgAdminUrl} is unreachable: ${pgProbe.reason}`);

/** Runs `agent-platform secrets rotate-key` from source with `env` (and nothing inherited that names a key). */
function rotateKey(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AGENT_PLATFORM_')));
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'secrets', 'rotate-key'], { cwd: REPO_ROOT, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function api<T>(p: PlatformProcess, method: string, path: string, body?: unknown): Promise<{ status: number; json: T; text: string }> {
  const res = await fetch(p.baseUrl + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  // Logs are plain text; everything else is JSON.
  const json = (res.headers.get('content-type') ?? '').includes('json') ? (JSON.parse(text) as T) : (undefined as T);
  return { status: res.status, text, json };
}

const stores: { name: string; enabled: boolean; setup(): Promise<{ env: Record<string, string>; dispose(): Promise<void> }> }[] = [
  // The embedded default: <data dir>/agent-platform.db.
  { name: 'sqlite data dir', enabled: true, setup: async () => ({ env: { AGENT_PLATFORM_DATABASE_URL: '' }, dispose: async () => undefined }) },
  {
    name: 'postgres',
    enabled: pgProbe.ok,
    setup: async () => {
      const db: ScratchDatabase = await createScratchDatabase(pgAdminUrl);
      return { env: { AGENT_PLATFORM_DATABASE_URL: db.url }, dispose: () => db.drop() };
    },
  },
];

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

for (const store of stores) {
  describe.skipIf(!hasDocker || !store.enabled)(`agent-platform secrets rotate-key (${store.name})`, () => {
    it('re-seals every secret under the new key; a platform with only the new key then reads them', async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'ap-rotate-'));
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
      const db = await store.setup();
      cleanups.push(db.dispose);
      const keyA = randomBytes(32).toString('base64');
      const keyB = randomBytes(32).toString('base64');
      const keyC = randomBytes(32).toString('base64');
      const idA = secretKeyId(Buffer.from(keyA, 'base64'));
      const idB = secretKeyId(Buffer.from(keyB, 'base64'));
      const base = { ...db.env, AGENT_PLATFORM_DATA_DIR: dataDir, AGENT_PLATFORM_ADMIN_TOKEN: ADMIN_TOKEN, AGENT_PLATFORM_LOG_LEVEL: 'warn', AGENT_PLATFORM_EGRESS_PROXY_PORT: '0' };
      const values = { 'db-password': `pw-${randomBytes(8).toString('hex')}`, 'api-token': `tok-${randomBytes(8).toString('hex')}` };

      // 1. A platform with key A seals the secrets.
      let platform = await startPlatformProcess({ ...base, AGENT_PLATFORM_SECRET_KEY: keyA, AGENT_PLATFORM_SECRET_KEYS_OLD: '' }, await freePort());
      cleanups.push(() => platform.stop());
      for (const [name, value] of Object.entries(values)) {
        const put = await api(platform, 'POST', '/api/v1/secrets', { name, value });
        expect(put.status, put.text).toBe(201);
      }
      const sealed = await api<{ items: { name: string; keyId: string }[] }>(platform, 'GET', '/api/v1/secrets');
      expect(sealed.json.items.map((s) => s.keyId)).toEqual([idA, idA]);
      await platform.stop();

      // 2. The new key without the old one opens nothing: exit 1, every secret named, nothing changed.
      const blind = await rotateKey({ ...base, AGENT_PLATFORM_SECRET_KEY: keyB });
      expect(blind.code, blind.stderr).toBe(1);
      expect(blind.stdout).toContain(`re-sealed 0 of 2 secrets with key ${idB} (0 already current, 2 unreadable)`);
      for (const name of Object.keys(values)) expect(blind.stderr).toMatch(new RegExp(`secret [^ ]+/${name} \\(key ${idA}\\) left unchanged: no key with id ${idA}`));

      // A bad key is a configuration error (exit 2) that says what to fix.
      const bad = await rotateKey({ ...base, AGENT_PLATFORM_SECRET_KEY: keyB, AGENT_PLATFORM_SECRET_KEYS_OLD: 'not-a-key' });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/AGENT_PLATFORM_SECRET_KEYS_OLD\[0\] must be the base64 encoding of 32 random bytes .*\(INVALID_SECRET_KEY\)/);

      // 3. New key current, old key decrypt-only: everything re-sealed; a second run has nothing to do.
      const rotate = await rotateKey({ ...base, AGENT_PLATFORM_SECRET_KEY: keyB, AGENT_PLATFORM_SECRET_KEYS_OLD: `${keyC},${keyA}` });
      expect(rotate.code, rotate.stderr).toBe(0);
      expect(rotate.stdout).toContain(`re-sealed 2 of 2 secrets with key ${idB} (0 already current, 0 unreadable)`);
      const again = await rotateKey({ ...base, AGENT_PLATFORM_SECRET_KEY: keyB, AGENT_PLATFORM_SECRET_KEYS_OLD: keyA });
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain(`re-sealed 0 of 2 secrets with key ${idB} (2 already current, 0 unreadable)`);

      // 4. Step 3 of the rotation: the old key is gone. The platform shows the new key id and
      // opens both secrets into an agent's environment.
      platform = await startPlatformProcess({ ...base, AGENT_PLATFORM_SECRET_KEY: keyB, AGENT_PLATFORM_SECRET_KEYS_OLD: '' }, await freePort());
      cleanups.push(() => platform.stop());
      const after = await api<{ items: { name: string; keyId: string }[] }>(platform, 'GET', '/api/v1/secrets');
      expect(after.json.items.map((s) => s.keyId)).toEqual([idB, idB]);
      const created = await api<{ id: string }>(platform, 'POST', '/api/v1/agents', {
        name: `rotated-${randomBytes(3).toString('hex')}`,
        image: PYTHON_IMAGE,
        command: ['python3', '-c', "import os; print('DB=' + os.environ['DB'], 'API=' + os.environ['API'], flush=True)"],
        env: { DB: { secretRef: 'db-password' }, API: { secretRef: 'api-token' } },
        restartPolicy: 'Never',
      });
      expect(created.status, created.text).toBe(201);
      const agentId = created.json.id;
      cleanups.push(async () => void (await api(platform, 'DELETE', `/api/v1/agents/${agentId}`)));
      const deadline = Date.now() + 120_000;
      let status: { phase: string; reason?: string; message?: string } = { phase: '' };
      while (!['Succeeded', 'Failed'].includes(status.phase)) {
        if (Date.now() > deadline) throw new Error(`agent did not finish: ${JSON.stringify(status)}\n${platform.output()}`);
        await sleep(300);
        status = (await api<{ status: typeof status }>(platform, 'GET', `/api/v1/agents/${agentId}`)).json.status;
      }
      expect(status, JSON.stringify(status)).toMatchObject({ phase: 'Succeeded' });
      const logs = await api(platform, 'GET', `/api/v1/agents/${agentId}/logs`);
      expect(logs.text).toContain(`DB=${values['db-password']} API=${values['api-token']}`);
      await api(platform, 'DELETE', `/api/v1/agents/${agentId}`);
      await platform.stop();
    }, 300_000);
  });
}
