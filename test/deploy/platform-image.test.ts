/**
 * The platform's own image (Dockerfile, scripts/build-platform-image.sh), built from local
 * base images only and run the way docs/deploy.md tells operators to run it: read-only root,
 * tmpfs /tmp, user 10001, no capabilities, the Docker socket through its group, the data dir
 * as a volume, the port published on loopback. Through that container's API a busybox agent
 * runs on the host's Docker and prints "hi".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { requireDocker } from '../helpers/require-docker.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';

const exec = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const IMAGE = 'agent-platform/platform:latest';
// The daemon the test talks to is the one the platform in the container must reach.
const DOCKER_SOCKET = (process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').replace(/^unix:\/\//, '');
const IMAGE_SIZE_LIMIT_MB = 200;

// Throws when CI=true and dockerd is missing, so the file fails instead of skipping.
const hasDocker = await requireDocker();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function docker(args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await exec('docker', args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

interface AgentJson {
  id: string;
  status: { phase: string; reason?: string; exitCode?: number };
}

describe.skipIf(!hasDocker)('platform image', () => {
  const token = randomBytes(18).toString('hex');
  const suffix = randomBytes(4).toString('hex');
  // Its own bridge network rather than the default one: port publishing needs a bridge, and a
  // user-defined one does not depend on docker0 (which other tests' daemons can disturb).
  const network = `ap-deploy-test-${suffix}`;
  let dataDir = '';
  let containerId = '';
  let baseUrl = '';
  let buildMs = 0;
  const agentIds: string[] = [];

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
    expect(DOCKER_SOCKET.startsWith('/'), `DOCKER_HOST ${process.env.DOCKER_HOST} is not a unix socket the container can mount`).toBe(true);
    const started = Date.now();
    // Cached by an inputs hash: cold about a minute on two cores, warm a few seconds.
    const { stdout } = await exec(join(repoRoot, 'scripts/build-platform-image.sh'), [], { cwd: repoRoot, timeout: 900_000, maxBuffer: 16 * 1024 * 1024 });
    buildMs = Date.now() - started;
    expect(stdout.trim()).toBe(IMAGE);
    await ensureBusyboxImage();

    dataDir = await mkdtemp(join(tmpdir(), 'platform-image-data-'));
    // The container runs as 10001; as root we hand it the directory, otherwise open it up.
    await chown(dataDir, 10001, 10001).catch(() => chmod(dataDir, 0o777));
    const socketGid = (await stat(DOCKER_SOCKET)).gid;
    await docker(['network', 'create', network]);
    containerId = await docker([
      'run', '--rm', '-d',
      '--name', `ap-deploy-test-${suffix}`,
      '--network', network,
      '--read-only', '--tmpfs', '/tmp',
      '--user', '10001',
      '--group-add', String(socketGid),
      '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
      // The image's own HEALTHCHECK command, run more often than its 30 s so the test sees it.
      '--health-interval', '1s', '--health-start-period', '1s',
      '-v', `${dataDir}:/var/lib/agent-platform`,
      '-v', `${DOCKER_SOCKET}:/var/run/docker.sock`,
      '-e', `AGENT_PLATFORM_ADMIN_TOKEN=${token}`,
      '-e', 'AGENT_PLATFORM_RESYNC_INTERVAL_MS=1000',
      '-p', '127.0.0.1::8080',
      IMAGE,
    ]);
    const published = await docker(['port', containerId, '8080/tcp']);
    const port = /^127\.0\.0\.1:(\d+)$/m.exec(published)?.[1];
    expect(port, `published on loopback only: ${published}`).toBeDefined();
    baseUrl = `http://127.0.0.1:${port}`;
  }, 900_000);

  afterAll(async () => {
    for (const id of agentIds) {
      const leftovers = await docker(['ps', '-aq', '--filter', `label=io.agent-platform.agent-id=${id}`]).catch(() => '');
      if (leftovers) await docker(['rm', '-f', ...leftovers.split('\n')]).catch(() => undefined);
    }
    if (containerId) await docker(['rm', '-f', containerId]).catch(() => undefined);
    await docker(['network', 'rm', network]).catch(() => undefined);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 60_000);

  it(`is non-root, has no shell, runs serve on 0.0.0.0:8080 and stays under ${IMAGE_SIZE_LIMIT_MB} MB`, async () => {
    const config = JSON.parse(await docker(['image', 'inspect', '--format', '{{json .Config}}', IMAGE])) as {
      User: string;
      Entrypoint: string[];
      Cmd: string[];
      ExposedPorts: Record<string, unknown>;
      Env: string[];
      Healthcheck?: { Test: string[] };
      Volumes: Record<string, unknown>;
    };
    expect(config.User).toBe('10001:10001');
    expect(config.Entrypoint).toEqual(['node', 'bin/agent-platform.js']);
    expect(config.Cmd).toEqual(['serve']);
    expect(Object.keys(config.ExposedPorts)).toEqual(['8080/tcp']);
    expect(Object.keys(config.Volumes)).toEqual(['/var/lib/agent-platform']);
    expect(config.Env).toEqual(expect.arrayContaining(['AGENT_PLATFORM_HOST=0.0.0.0', 'AGENT_PLATFORM_PORT=8080', 'AGENT_PLATFORM_DATA_DIR=/var/lib/agent-platform']));
    expect(config.Healthcheck?.Test.slice(0, 2)).toEqual(['CMD', 'node']);

    const sizeMB = Number(await docker(['image', 'inspect', '--format', '{{.Size}}', IMAGE])) / 1e6;
    console.log(`platform image ${sizeMB.toFixed(1)} MB; build step took ${buildMs} ms`);
    expect(sizeMB).toBeLessThan(IMAGE_SIZE_LIMIT_MB);

    // Distroless: nothing but node to run. (`docker run` fails with 127 on a missing binary.)
    const shell = await docker(['run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', IMAGE, '-c', 'true']).then(
      () => 'ran',
      (err: { code?: number }) => err.code,
    );
    expect(shell).toBe(127);
  });

  it('answers /health and /ready, and its HEALTHCHECK reports healthy', async () => {
    const deadline = Date.now() + 60_000;
    let ready = { status: 0, text: '' };
    for (;;) {
      // Short: a connection to the published port before the server listens can hang.
      ready = await api('GET', '/ready', undefined, 2_000).catch((err: unknown) => ({ status: 0, text: String(err) }));
      if (ready.status === 200 || Date.now() > deadline) break;
      await sleep(250);
    }
    const logs = async (): Promise<string> => (await exec('docker', ['logs', '--tail', '30', containerId]).catch(() => ({ stdout: '', stderr: '' }))).stderr;
    expect(ready.status, `${ready.text}\n${await logs()}`).toBe(200);
    expect(JSON.parse(ready.text)).toMatchObject({ status: 'ready', checks: { store: { ok: true }, 'runtime:local': { ok: true } } });
    expect(await api('GET', '/health')).toEqual({ status: 200, text: '{"status":"ok"}' });

    let health = '';
    while (Date.now() < deadline) {
      health = await docker(['inspect', '--format', '{{.State.Health.Status}}', containerId]);
      if (health === 'healthy') break;
      await sleep(500);
    }
    expect(health).toBe('healthy');

    // The store lives in the volume, written by uid 10001 (the rest of the root is read-only).
    const files = await readdir(dataDir);
    expect(files).toContain('agent-platform.db');
    expect((await stat(join(dataDir, 'agent-platform.db'))).uid).toBe(10001);
  }, 90_000);

  it('runs a busybox agent on the host Docker through the socket: Succeeded, log "hi"', async () => {
    const created = await api('POST', '/api/v1/agents', {
      name: `hi-${suffix}`,
      image: 'agent-platform/busybox:latest',
      command: ['sh', '-c', 'echo hi'],
      resources: { cpu: '100m', memory: '32Mi' },
    });
    expect(created.status, created.text).toBe(201);
    const { id } = JSON.parse(created.text) as AgentJson;
    agentIds.push(id);

    let agent: AgentJson | undefined;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const got = await api('GET', `/api/v1/agents/${id}`);
      expect(got.status, got.text).toBe(200);
      agent = JSON.parse(got.text) as AgentJson;
      if (agent.status.phase === 'Succeeded' || agent.status.phase === 'Failed') break;
      await sleep(200);
    }
    expect(agent?.status).toMatchObject({ phase: 'Succeeded', exitCode: 0 });
    expect(await api('GET', `/api/v1/agents/${id}/logs`)).toEqual({ status: 200, text: 'hi\n' });

    // The agent's container sits on the host's daemon, beside the platform's, not inside it.
    const containers = await docker(['ps', '-aq', '--filter', `label=io.agent-platform.agent-id=${id}`]);
    expect(containers.split('\n').filter(Boolean)).toHaveLength(1);
    const deleted = await api('DELETE', `/api/v1/agents/${id}`);
    expect(deleted.status, deleted.text).toBe(200);
    expect(await docker(['ps', '-aq', '--filter', `label=io.agent-platform.agent-id=${id}`])).toBe('');
  }, 90_000);

  it('stops cleanly on SIGTERM (docker stop) well within the grace period', async () => {
    const started = Date.now();
    await docker(['stop', '--time', '20', containerId], 40_000);
    const tookMs = Date.now() - started;
    // Past the grace period Docker would SIGKILL: a clean exit is much sooner than 20 s.
    expect(tookMs).toBeLessThan(15_000);
    // --rm: the daemon removes the container right after it exits.
    let left = containerId;
    for (let i = 0; i < 20 && left !== ''; i++) {
      left = await docker(['ps', '-aq', '--filter', `id=${containerId}`]);
      if (left !== '') await sleep(100);
    }
    expect(left).toBe('');
    containerId = '';
  }, 60_000);
});
