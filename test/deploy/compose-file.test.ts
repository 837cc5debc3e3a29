/**
 * deploy/compose/docker-compose.yml: its wiring checked statically (services, the platform's
 * environment parsed by the platform's own loadConfig, socket mount, loopback-only ports),
 * validated by `docker compose config` where a compose CLI exists, and the platform service's
 * settings run for real against PostgreSQL and Redis. postgres:16 and redis:7 cannot be pulled
 * here (no registry), so that last part uses this machine's loopback PostgreSQL and Redis in
 * their place, with the platform container on the host network to reach them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.js';
import { requireDocker, isCI } from '../helpers/require-docker.js';
import { requireRedis, testRedisUrl, deleteRedisPrefix } from '../helpers/require-redis.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { createScratchDatabase, probePostgres, type ScratchDatabase } from '../crash/scratch-database.js';

const exec = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const COMPOSE_FILE = join(repoRoot, 'deploy/compose/docker-compose.yml');
const pgAdminUrl = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface ComposeService {
  image: string;
  user?: string;
  group_add?: string[];
  read_only?: boolean;
  tmpfs?: string[];
  cap_drop?: string[];
  security_opt?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  command?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/**
 * Compose variable interpolation (`${X}`, `${X:-default}`, `${X-default}`, `${X:?error}`,
 * `${X?error}`, `$$`), enough for this file: a required variable that is missing throws, as
 * `docker compose` refuses to start.
 */
function interpolate(text: string, vars: Record<string, string | undefined>): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (whole, name: string | undefined, op: string | undefined, arg: string | undefined) => {
    if (whole === '$$') return '$';
    const value = vars[name!];
    const unset = op?.startsWith(':') ? value === undefined || value === '' : value === undefined;
    if (op === ':-' || op === '-') return unset ? arg! : value!;
    if (op === ':?' || op === '?') {
      if (unset) throw new Error(`required variable ${name}: ${arg}`);
      return value!;
    }
    return value ?? '';
  });
}

const exampleVars = {
  AGENT_PLATFORM_ADMIN_TOKEN: 'a'.repeat(32),
  POSTGRES_PASSWORD: 'p4ss-word',
  DOCKER_GID: '998',
};

async function loadCompose(vars: Record<string, string | undefined> = exampleVars): Promise<ComposeFile> {
  return parse(interpolate(await readFile(COMPOSE_FILE, 'utf8'), vars)) as ComposeFile;
}

/** `docker compose` (plugin) or `docker-compose` (standalone), whichever answers. */
async function composeCli(): Promise<string[] | undefined> {
  for (const cli of [['docker', 'compose'], ['docker-compose']]) {
    try {
      await exec(cli[0]!, [...cli.slice(1), 'version'], { timeout: 20_000 });
      return cli;
    } catch {
      // not installed
    }
  }
  return undefined;
}

describe('deploy/compose/docker-compose.yml', () => {
  it('wires the platform to the postgres and redis services, as loadConfig accepts it', async () => {
    const compose = await loadCompose();
    expect(Object.keys(compose.services).sort()).toEqual(['platform', 'postgres', 'redis']);
    const { platform, postgres, redis } = compose.services as Record<'platform' | 'postgres' | 'redis', ComposeService>;
    expect(platform.image).toBe('agent-platform/platform:latest');
    expect(postgres.image).toBe('postgres:16');
    expect(redis.image).toBe('redis:7');

    const env = platform.environment!;
    const db = new URL(env.AGENT_PLATFORM_DATABASE_URL!);
    expect(db.protocol).toBe('postgres:');
    expect(db.hostname).toBe('postgres');
    expect(db.port).toBe('5432');
    // The credentials and database are the ones the postgres service is initialised with.
    expect(decodeURIComponent(db.username)).toBe(postgres.environment!.POSTGRES_USER);
    expect(decodeURIComponent(db.password)).toBe(postgres.environment!.POSTGRES_PASSWORD);
    expect(db.password).toBe(exampleVars.POSTGRES_PASSWORD);
    expect(db.pathname).toBe(`/${postgres.environment!.POSTGRES_DB}`);
    const redisUrl = new URL(env.AGENT_PLATFORM_REDIS_URL!);
    expect(`${redisUrl.protocol}//${redisUrl.host}`).toBe('redis://redis:6379');

    // The platform parses exactly this environment without complaint.
    const config = loadConfig(env);
    expect(config).toMatchObject({ databaseUrl: env.AGENT_PLATFORM_DATABASE_URL, redisUrl: env.AGENT_PLATFORM_REDIS_URL, adminToken: exampleVars.AGENT_PLATFORM_ADMIN_TOKEN });
    expect(config.secretKey).toBeUndefined();

    expect(platform.depends_on).toEqual({ postgres: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
    expect(postgres.healthcheck?.test).toContain('pg_isready');
    expect(redis.healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
  });

  it('locks the platform down: socket through its group only, read-only, non-root, loopback ports', async () => {
    const compose = await loadCompose();
    const platform = compose.services.platform!;
    expect(platform.volumes).toContain('/var/run/docker.sock:/var/run/docker.sock');
    expect(platform.volumes).toContain('platform-data:/var/lib/agent-platform');
    expect(platform.group_add).toEqual([exampleVars.DOCKER_GID]);
    expect(platform).toMatchObject({ user: '10001:10001', read_only: true, tmpfs: ['/tmp'], cap_drop: ['ALL'], security_opt: ['no-new-privileges:true'] });
    expect(platform.ports).toEqual(['127.0.0.1:8080:8080']);
    // Every published port of every service is on loopback; the databases publish none.
    for (const [name, service] of Object.entries(compose.services)) {
      for (const port of service.ports ?? []) expect(port, `${name} publishes ${port}`).toMatch(/^127\.0\.0\.1:/);
    }
    expect(compose.services.postgres!.ports).toBeUndefined();
    expect(compose.services.redis!.ports).toBeUndefined();
    for (const named of ['platform-data', 'postgres-data', 'redis-data']) expect(compose.volumes).toHaveProperty(named);
  });

  it('refuses to start without the secrets it needs', async () => {
    await expect(loadCompose({ ...exampleVars, POSTGRES_PASSWORD: undefined })).rejects.toThrow(/POSTGRES_PASSWORD/);
    await expect(loadCompose({ ...exampleVars, AGENT_PLATFORM_ADMIN_TOKEN: '' })).rejects.toThrow(/AGENT_PLATFORM_ADMIN_TOKEN/);
    await expect(loadCompose({ ...exampleVars, DOCKER_GID: undefined })).rejects.toThrow(/DOCKER_GID/);
  });

  it('passes `docker compose config` when a compose CLI is installed', async (ctx) => {
    const cli = await composeCli();
    if (!cli) {
      // scripts/ensure-docker.sh installs Debian's docker-compose; only a developer machine
      // set up some other way may lack it.
      if (isCI) throw new Error('CI=true but no compose CLI (docker compose or docker-compose); run make docker');
      ctx.skip();
      return;
    }
    const { stdout } = await exec(cli[0]!, [...cli.slice(1), '-f', COMPOSE_FILE, 'config'], {
      env: { ...process.env, ...exampleVars },
      timeout: 60_000,
    });
    const resolved = parse(stdout) as ComposeFile;
    expect(Object.keys(resolved.services).sort()).toEqual(['platform', 'postgres', 'redis']);
    expect(JSON.stringify(resolved.services.platform!.environment)).toContain('@postgres:5432/agent_platform');
  }, 90_000);
});

// Docker, PostgreSQL and Redis: each gate throws when CI=true and the service is missing.
const hasDocker = await requireDocker();
const hasRedis = await requireRedis();
const pgProbe = await probePostgres(pgAdminUrl);
if (!pgProbe.ok && isCI) throw new Error(`CI=true but PostgreSQL is not reachable at ${pgAdminUrl}: ${pgProbe.reason}`);

describe.skipIf(!hasDocker || !hasRedis || !pgProbe.ok)('the compose platform service, run for real', () => {
  const suffix = randomBytes(4).toString('hex');
  const token = randomBytes(18).toString('hex');
  const redisPrefix = `ap-compose-test-${suffix}:`;
  let database: ScratchDatabase | undefined;
  let dataDir = '';
  let containerId = '';
  let baseUrl = '';
  let agentId = '';

  const api = async (method: string, path: string, body?: unknown, timeoutMs = 20_000): Promise<{ status: number; text: string }> => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.status, text: await res.text() };
  };

  beforeAll(async () => {
    const { stdout } = await exec(join(repoRoot, 'scripts/build-platform-image.sh'), [], { cwd: repoRoot, timeout: 900_000, maxBuffer: 16 * 1024 * 1024 });
    expect(stdout.trim()).toBe('agent-platform/platform:latest');
    await ensureBusyboxImage();
    database = await createScratchDatabase(pgAdminUrl);
    dataDir = await mkdtemp(join(tmpdir(), 'compose-platform-data-'));
    await chown(dataDir, 10001, 10001).catch(() => chmod(dataDir, 0o777));
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;

    const compose = await loadCompose({ ...exampleVars, AGENT_PLATFORM_ADMIN_TOKEN: token, DOCKER_GID: String((await stat('/var/run/docker.sock')).gid) });
    const service = compose.services.platform!;
    // The service's environment, with the two service names swapped for this machine's
    // loopback servers (the stand-ins for the unpullable postgres:16 and redis:7).
    const env: Record<string, string> = {
      ...service.environment,
      AGENT_PLATFORM_DATABASE_URL: database.url,
      AGENT_PLATFORM_REDIS_URL: testRedisUrl,
      AGENT_PLATFORM_REDIS_PREFIX: redisPrefix,
      // Host network: loopback and a free port, never the image's 0.0.0.0:8080.
      AGENT_PLATFORM_HOST: '127.0.0.1',
      AGENT_PLATFORM_PORT: String(port),
    };
    const args = ['run', '--rm', '-d', '--name', `ap-compose-test-${suffix}`, '--network', 'host', '--user', service.user!];
    for (const gid of service.group_add ?? []) args.push('--group-add', gid);
    if (service.read_only) args.push('--read-only');
    for (const path of service.tmpfs ?? []) args.push('--tmpfs', path);
    for (const cap of service.cap_drop ?? []) args.push('--cap-drop', cap);
    for (const opt of service.security_opt ?? []) args.push('--security-opt', opt);
    for (const volume of service.volumes ?? []) args.push('-v', volume.replace(/^platform-data:/, `${dataDir}:`));
    for (const [name, value] of Object.entries(env)) args.push('-e', `${name}=${value}`);
    containerId = (await exec('docker', [...args, service.image], { timeout: 60_000 })).stdout.trim();
  }, 900_000);

  afterAll(async () => {
    if (containerId) await exec('docker', ['rm', '-f', containerId]).catch(() => undefined);
    if (agentId) {
      const { stdout } = await exec('docker', ['ps', '-aq', '--filter', `label=io.agent-platform.agent-id=${agentId}`]).catch(() => ({ stdout: '' }));
      if (stdout.trim()) await exec('docker', ['rm', '-f', ...stdout.trim().split('\n')]).catch(() => undefined);
    }
    await database?.drop().catch(() => undefined);
    await deleteRedisPrefix(redisPrefix).catch(() => undefined);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('is ready on PostgreSQL, leads through the Redis lease, and runs an agent', async () => {
    const deadline = Date.now() + 60_000;
    let ready = { status: 0, text: '' };
    while (Date.now() < deadline) {
      // Short: a connection to the published port before the server listens can hang.
      ready = await api('GET', '/ready', undefined, 2_000).catch((err: unknown) => ({ status: 0, text: String(err) }));
      if (ready.status === 200) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const logs = async (): Promise<string> => (await exec('docker', ['logs', '--tail', '30', containerId]).catch(() => ({ stdout: '', stderr: '' }))).stderr;
    expect(ready.status, `${ready.text}\n${await logs()}`).toBe(200);
    expect(JSON.parse(ready.text)).toMatchObject({ checks: { store: { ok: true } } });
    // Lease mode is Redis; the only replica becomes leader within a lease TTL or so.
    let leader: { mode?: string; leader?: boolean } = {};
    while (Date.now() < deadline) {
      leader = JSON.parse((await api('GET', '/api/v1/leader')).text) as typeof leader;
      if (leader.leader) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(leader).toMatchObject({ mode: 'lease', leader: true });

    const created = await api('POST', '/api/v1/agents', { name: 'compose-hi', image: 'agent-platform/busybox:latest', command: ['sh', '-c', 'echo hi'], resources: { cpu: '100m', memory: '32Mi' } });
    expect(created.status, created.text).toBe(201);
    const { id } = JSON.parse(created.text) as { id: string };
    agentId = id;
    let phase = '';
    while (Date.now() < deadline) {
      phase = (JSON.parse((await api('GET', `/api/v1/agents/${id}`)).text) as { status: { phase: string } }).status.phase;
      if (phase === 'Succeeded' || phase === 'Failed') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(phase, await logs()).toBe('Succeeded');
    expect(await api('GET', `/api/v1/agents/${id}/logs`)).toEqual({ status: 200, text: 'hi\n' });
    expect((await api('DELETE', `/api/v1/agents/${id}`)).status).toBe(200);
  }, 120_000);
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
