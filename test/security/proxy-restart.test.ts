import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { DockerRuntime } from '../../src/runtime/docker/docker-runtime.js';
import { AGENT_ID_LABEL } from '../../src/runtime/runtime.js';
import { requireDocker } from '../helpers/require-docker.js';
import { ScopedRuntime } from '../integration/scoped-runtime.js';
import { dockerExec, PYTHON_IMAGE, sleep, uniqueName, type AgentJson } from './security-harness.js';

const hasDocker = await requireDocker();

interface EgressJson {
  items: { id: number; decision: 'allow' | 'deny'; reason: string; host: string; port: number | null }[];
}

/** A free TCP port on this host (the proxy needs the same one across the restart). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '0.0.0.0', () => resolve()));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** One HTTP GET through the agent's HTTP_PROXY, run inside the container; prints the status and body. */
const FETCH = [
  'import sys, urllib.request, urllib.error',
  'try:',
  '    r = urllib.request.urlopen(sys.argv[1], timeout=10)',
  "    print(r.status, r.read().decode().strip())",
  'except urllib.error.HTTPError as e:',
  '    print(e.code, "refused")',
  'except Exception as e:',
  '    print(0, type(e).__name__, e)',
].join('\n');

/**
 * A control plane restarted on the same data directory while an allowlist agent keeps
 * running: the new process has a fresh egress proxy that knows no source address, so the
 * agent keeps egress only if the controller registers it again (AgentSandbox.observe).
 */
describe.skipIf(!hasDocker)('egress proxy across a control-plane restart', () => {
  const docker = new Docker();
  const token = `rst_${randomBytes(16).toString('hex')}`;
  const banner = `allowed-${randomBytes(6).toString('hex')}`;
  const agentIds = new Set<string>();
  let dataDir: string;
  let hostsDir: string;
  let server: Server;
  let upstreamPort: number;
  let proxyPort: number;
  let platform: Platform | undefined;
  let baseUrl: string;

  async function startPlatform(): Promise<void> {
    const config = loadConfig({
      AGENT_PLATFORM_PORT: '0',
      AGENT_PLATFORM_HOST: '127.0.0.1',
      AGENT_PLATFORM_LOG_LEVEL: 'silent',
      AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
      AGENT_PLATFORM_STOP_GRACE_MS: '1000',
      AGENT_PLATFORM_START_TIMEOUT_MS: '60000',
      // Fixed: a running agent's HTTP_PROXY names the port it was created with.
      AGENT_PLATFORM_EGRESS_PROXY_PORT: String(proxyPort),
      AGENT_PLATFORM_DATA_DIR: dataDir,
      AGENT_PLATFORM_ADMIN_TOKEN: token,
      DOCKER_HOST: process.env.DOCKER_HOST,
    });
    const runtime = new ScopedRuntime(new DockerRuntime({ nodeId: config.nodeName, dockerHost: config.dockerHost }), (id) => agentIds.has(id));
    platform = await buildPlatform(config, {
      runtimes: [runtime],
      security: { egressHostsFile: join(hostsDir, 'hosts'), trustEgressHostsFile: true, egressNodeIds: [config.nodeName] },
    });
    const address = await platform.start();
    baseUrl = `http://127.0.0.1:${new URL(address).port}`;
  }

  async function request<T>(method: string, path: string, body?: unknown): Promise<{ status: number; text: string; json: T }> {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, text, json: (text ? JSON.parse(text) : undefined) as T };
  }

  async function waitRunning(id: string): Promise<AgentJson> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const a = await request<AgentJson>('GET', `/api/v1/agents/${id}`);
      expect(a.status, a.text).toBe(200);
      if (a.json.status.phase === 'Running' && a.json.status.containerId !== undefined) return a.json;
      if (Date.now() > deadline) throw new Error(`agent ${id} not Running: ${JSON.stringify(a.json.status)}`);
      await sleep(200);
    }
  }

  const fetchFrom = async (containerId: string, host: string): Promise<string> => (await dockerExec(containerId, ['python3', '-c', FETCH, `http://${host}:${upstreamPort}/`], undefined, 30_000)).stdout.trim();

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ap-proxy-restart-'));
    hostsDir = await mkdtemp(join(tmpdir(), 'ap-proxy-hosts-'));
    await writeFile(join(hostsDir, 'hosts'), '127.0.0.1 allowed.test denied.test\n');
    server = createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${banner.length}\r\nConnection: close\r\n\r\n${banner}`));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    upstreamPort = (server.address() as { port: number }).port;
    proxyPort = await freePort();
    await startPlatform();
  }, 120_000);

  afterAll(async () => {
    try {
      if (platform !== undefined) for (const id of agentIds) await request('DELETE', `/api/v1/agents/${id}`).catch(() => undefined);
      await platform?.close();
    } finally {
      for (const id of agentIds) {
        const list = await docker.listContainers({ all: true, filters: { label: [`${AGENT_ID_LABEL}=${id}`] } });
        for (const c of list) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
      }
      server?.close();
      await rm(dataDir, { recursive: true, force: true });
      await rm(hostsDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('registers a running allowlist agent again: the allowed destination still works, a denied one is still denied, and the audit shows both', async () => {
    const created = await request<AgentJson>('POST', '/api/v1/agents', {
      name: uniqueName('rst'),
      image: PYTHON_IMAGE,
      command: ['sleep', '3600'],
      network: { mode: 'allowlist', allow: [`allowed.test:${upstreamPort}`] },
    });
    expect(created.status, created.text).toBe(201);
    agentIds.add(created.json.id);
    const before = await waitRunning(created.json.id);
    const containerId = before.status.containerId!;
    expect(await fetchFrom(containerId, 'allowed.test')).toBe(`200 ${banner}`);
    expect(await fetchFrom(containerId, 'denied.test')).toBe('403 refused');

    // The control plane goes away; the agent does not.
    await platform!.close();
    platform = undefined;
    expect((await docker.getContainer(containerId).inspect()).State.Running).toBe(true);
    // With the proxy gone the agent has no way out (so what works below is the new process).
    expect(await fetchFrom(containerId, 'allowed.test')).toMatch(/^0 /);

    await startPlatform();
    const after = await waitRunning(created.json.id);
    expect(after.status.containerId).toBe(containerId);
    const lastBefore = Math.max(0, ...(await request<EgressJson>('GET', `/api/v1/agents/${created.json.id}/egress?limit=1000`)).json.items.map((r) => r.id));
    // Registration happens on the agent's first reconcile after the start: poll briefly.
    const deadline = Date.now() + 30_000;
    let allowed = await fetchFrom(containerId, 'allowed.test');
    while (allowed !== `200 ${banner}` && Date.now() < deadline) {
      await sleep(300);
      allowed = await fetchFrom(containerId, 'allowed.test');
    }
    expect(allowed).toBe(`200 ${banner}`);
    expect(await fetchFrom(containerId, 'denied.test')).toBe('403 refused');

    await platform!.security.auditSink.flush();
    const audit = await request<EgressJson>('GET', `/api/v1/agents/${created.json.id}/egress?after=${lastBefore}&limit=1000`);
    expect(audit.status, audit.text).toBe(200);
    const seen = audit.json.items.map((r) => `${r.decision} ${r.reason} ${r.host}:${r.port}`);
    expect(seen).toContain(`allow allowed allowed.test:${upstreamPort}`);
    expect(seen).toContain(`deny not-in-allowlist denied.test:${upstreamPort}`);
  }, 240_000);
});
