import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCI, requireDocker } from '../helpers/require-docker.js';
import { PYTHON_IMAGE, SecurityPlatform, sleep, uniqueName, type AgentJson } from './security-harness.js';

const hasDocker = await requireDocker();

/**
 * The gateway of Docker's default `bridge` network (docker0), where open-mode agents live.
 * A daemon started with `--bridge none` has no such network: skip, or fail under CI=true.
 */
async function bridgeGateway(): Promise<string | undefined> {
  if (!hasDocker) return undefined;
  let gateway: string | undefined;
  try {
    const info = (await new Docker().getNetwork('bridge').inspect()) as { IPAM?: { Config?: { Gateway?: string; Subnet?: string }[] } };
    const v4 = info.IPAM?.Config?.find((c) => (c.Gateway ?? c.Subnet ?? ':').includes(':') === false);
    // Some engines (seen with a freshly created docker0) list only the subnet; Docker's
    // default gateway is then the subnet's first address.
    gateway = v4?.Gateway ?? (v4?.Subnet !== undefined ? firstHost(v4.Subnet) : undefined);
  } catch {
    gateway = undefined;
  }
  if (gateway === undefined && isCI) throw new Error("CI=true but Docker's default bridge network (docker0) is missing; restart dockerd without --bridge none");
  return gateway;
}

function firstHost(cidr: string): string {
  const [base] = cidr.split('/');
  const octets = base!.split('.').map(Number);
  octets[3] = octets[3]! + 1;
  return octets.join('.');
}

const gateway = await bridgeGateway();

interface ErrorJson {
  error: { code: string; message: string };
}

/** The agent's program: one TCP connection to host:port, its outcome on stdout, then idle. */
const PROBE = [
  'import socket, sys, time',
  'try:',
  '    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)',
  "    print('got:' + s.recv(200).decode().strip(), flush=True)",
  'except Exception as e:',
  "    print('fail:%s:%s' % (type(e).__name__, e), flush=True)",
  'time.sleep(3600)',
].join('\n');

describe.skipIf(gateway === undefined)("network mode open: Docker's default bridge, platform admins only", () => {
  let p: SecurityPlatform;
  let server: Server;
  let port: number;
  const banner = `host-service-${randomBytes(6).toString('hex')}`;
  const peers: string[] = [];

  beforeAll(async () => {
    // A host service on the bridge gateway only: reachable from docker0, nowhere else.
    server = createServer((s) => {
      peers.push((s.remoteAddress ?? '').replace(/^::ffff:/, ''));
      s.on('error', () => undefined);
      s.end(`${banner}\n`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, gateway, () => resolve());
    });
    port = (server.address() as { port: number }).port;
    p = await SecurityPlatform.start();
  }, 120_000);

  afterAll(async () => {
    await p?.close();
    server?.close();
  }, 120_000);

  /** Waits until the probe printed its outcome; returns that line. */
  async function probeOutcome(agent: AgentJson): Promise<string> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const logs = await p.request('GET', `/api/v1/agents/${agent.id}/logs`);
      const line = logs.text.split('\n').find((l) => l.startsWith('got:') || l.startsWith('fail:'));
      if (line !== undefined) return line;
      if (Date.now() > deadline) throw new Error(`agent ${agent.id} printed nothing: ${logs.status} ${logs.text}`);
      await sleep(250);
    }
  }

  it('lets a member neither create nor PATCH its way to open (403 NETWORK_OPEN_FORBIDDEN)', async () => {
    expect((await p.request('POST', '/api/v1/tenants', { id: 'open-t' })).status).toBe(201);
    const key = await p.request<{ key: string }>('POST', '/api/v1/tenants/open-t/keys', { name: 'm', role: 'member' });
    expect(key.status, key.text).toBe(201);
    const body = { name: uniqueName('open'), image: PYTHON_IMAGE, command: ['python3', '-c', PROBE, gateway!, String(port)], network: { mode: 'open' } };
    const denied = await p.request<ErrorJson>('POST', '/api/v1/agents', body, key.json.key);
    expect(denied.status, denied.text).toBe(403);
    expect(denied.json.error.code).toBe('NETWORK_OPEN_FORBIDDEN');
    const own = await p.request<AgentJson>('POST', '/api/v1/agents', { name: uniqueName('own'), image: PYTHON_IMAGE, command: ['true'] }, key.json.key);
    expect(own.status, own.text).toBe(201);
    const patched = await p.request<ErrorJson>('PATCH', `/api/v1/agents/${own.json.id}`, { network: { mode: 'open' } }, key.json.key);
    expect(patched.status, patched.text).toBe(403);
    expect(peers).toEqual([]);
  });

  it("reaches a host service on the bridge gateway from an admin's open agent, while a default (none) agent cannot", async () => {
    const command = ['python3', '-c', PROBE, gateway!, String(port)];
    // Control first: the same probe without a network must not get through.
    const closed = await p.create({ name: uniqueName('closed'), image: PYTHON_IMAGE, command });
    expect((await probeOutcome(closed)).startsWith('fail:')).toBe(true);
    expect(peers).toEqual([]);

    const open = await p.create({ name: uniqueName('open'), image: PYTHON_IMAGE, command, network: { mode: 'open' } });
    expect(open.spec.network).toEqual({ mode: 'open' });
    const running = await p.waitRunning(open.id);
    expect(await probeOutcome(running)).toBe(`got:${banner}`);
    const info = await p.docker.getContainer(running.status.containerId!).inspect();
    expect(info.HostConfig.NetworkMode).toBe('bridge');
    // The connection the host saw came from this agent's address on the bridge.
    const ip = info.NetworkSettings.Networks.bridge?.IPAddress;
    expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(peers).toEqual([ip]);
    // Open mode gets no proxy: it needs none.
    expect(info.Config.Env.some((e) => e.startsWith('HTTP_PROXY='))).toBe(false);
  }, 180_000);

  it('takes an open agent back to none while it is stopped: the next start replaces its container, which then gets nowhere', async () => {
    const command = ['python3', '-c', PROBE, gateway!, String(port)];
    const open = await p.create({ name: uniqueName('reopen'), image: PYTHON_IMAGE, command, network: { mode: 'open' } });
    const running = await p.waitRunning(open.id);
    expect(await probeOutcome(running)).toBe(`got:${banner}`);
    const seen = peers.length;
    const oldContainer = running.status.containerId!;

    expect((await p.request('POST', `/api/v1/agents/${open.id}/stop`)).status).toBe(200);
    await p.waitFor(open.id, (a) => a.status.phase === 'Stopped', 60_000, 'Stopped');
    const patched = await p.request<AgentJson>('PATCH', `/api/v1/agents/${open.id}`, { network: { mode: 'none' } });
    expect(patched.status, patched.text).toBe(200);
    expect((await p.request('POST', `/api/v1/agents/${open.id}/start`)).status).toBe(200);
    const again = await p.waitRunning(open.id);

    // A new container on no network at all, not the old one back on the bridge.
    expect(again.status.containerId).not.toBe(oldContainer);
    const info = await p.docker.getContainer(again.status.containerId!).inspect();
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(info.Config.Labels['io.agent-platform.network-mode']).toBe('none');
    await expect(p.docker.getContainer(oldContainer).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect((await probeOutcome(again)).startsWith('fail:')).toBe(true);
    expect(peers).toHaveLength(seen);
    const events = await p.request<{ items: { reason: string; data?: { from?: string; to?: string } }[] }>('GET', `/api/v1/agents/${open.id}/events`);
    expect(events.json.items.map((e) => e.reason)).toContain('ContainerReplaced');
  }, 240_000);
});
