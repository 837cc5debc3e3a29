import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDocker } from '../helpers/require-docker.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { dockerExec, PYTHON_IMAGE, requireGvisor, SecurityPlatform, uniqueName, type AgentJson } from './security-harness.js';

const hasDocker = await requireDocker();
const hasGvisor = hasDocker && (await requireGvisor());

interface ErrorJson {
  error: { code: string; message: string };
}

/** Every file under dir, concatenated (SQLite db, WAL, key file). */
async function allBytes(dir: string): Promise<Buffer> {
  const out: Buffer[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(await readFile(join(entry.parentPath, entry.name)).catch(() => Buffer.alloc(0)));
  }
  return Buffer.concat(out);
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.setTimeout(2_000, () => {
      s.destroy();
      resolve(false);
    });
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

describe.skipIf(!hasDocker)('security API: isolation, network policy, secrets', () => {
  let p: SecurityPlatform;
  let busybox: string;
  let memberToken: string;
  const secretValue = `sk-${randomBytes(12).toString('hex')}`;

  beforeAll(async () => {
    busybox = await ensureBusyboxImage();
    p = await SecurityPlatform.start({ logLevel: 'debug' });
    const tenant = await p.request('POST', '/api/v1/tenants', { id: 'acme' });
    expect(tenant.status, tenant.text).toBe(201);
    const key = await p.request<{ key: string }>('POST', '/api/v1/tenants/acme/keys', { name: 'ci', role: 'member' });
    expect(key.status, key.text).toBe(201);
    memberToken = key.json.key;
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  }, 60_000);

  it('has no way to ask for privileged mode, host mounts, devices or host namespaces', async () => {
    const base = { name: uniqueName('bad'), image: busybox, command: ['true'] };
    for (const field of ['privileged', 'hostMounts', 'volumes', 'binds', 'mounts', 'devices', 'capAdd', 'securityContext', 'hostNetwork', 'hostPID', 'runtime', 'seccomp', 'user']) {
      const res = await p.request<ErrorJson>('POST', '/api/v1/agents', { ...base, [field]: field === 'privileged' ? true : ['/:/host'] });
      expect(res.status, `${field}: ${res.text}`).toBe(400);
      expect(res.json.error.message).toContain(field);
    }
    expect((await p.request('POST', '/api/v1/agents', { ...base, isolation: 'kata' })).status).toBe(400);
    expect((await p.request('POST', '/api/v1/agents', { ...base, network: { mode: 'allowlist', allow: ['x.example'], extra: 1 } })).status).toBe(400);
    expect([400, 422]).toContain((await p.request('POST', '/api/v1/agents', { ...base, network: { mode: 'allowlist', allow: ['http://x.example/'] } })).status);
  });

  it('gives network mode open to platform admins only', async () => {
    const body = { name: uniqueName('open'), image: busybox, command: ['true'], network: { mode: 'open' } };
    const denied = await p.request<ErrorJson>('POST', '/api/v1/agents', body, memberToken);
    expect(denied.status, denied.text).toBe(403);
    expect(denied.json.error.code).toBe('NETWORK_OPEN_FORBIDDEN');
    const allowed = await p.request<AgentJson>('POST', '/api/v1/agents', { ...body, desired: undefined }, p.token);
    expect(allowed.status, allowed.text).toBe(201);
    expect(allowed.json.spec.network).toEqual({ mode: 'open' });
    await p.request('DELETE', `/api/v1/agents/${allowed.json.id}`);
    // A member cannot PATCH its way to open either.
    const mine = await p.create({ name: uniqueName('mine'), image: busybox, command: ['true'] }, memberToken);
    expect((await p.request('PATCH', `/api/v1/agents/${mine.id}`, { network: { mode: 'open' } }, memberToken)).status).toBe(403);
  });

  it('stores secrets encrypted, never returns them, and scopes them to the tenant', async () => {
    const created = await p.request<{ name: string; keyId: string }>('POST', '/api/v1/secrets', { name: 'openai', value: secretValue });
    expect(created.status, created.text).toBe(201);
    expect(created.text).not.toContain(secretValue);
    expect(created.json.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect((await p.request('POST', '/api/v1/secrets', { name: 'openai', value: secretValue })).status).toBe(200);
    const list = await p.request<{ items: { name: string }[] }>('GET', '/api/v1/secrets');
    expect(list.json.items.map((s) => s.name)).toEqual(['openai']);
    expect(list.text).not.toContain(secretValue);
    expect((await p.request('GET', '/api/v1/secrets/openai')).text).not.toContain(secretValue);
    // Another tenant sees nothing and cannot reference it.
    expect((await p.request<{ items: unknown[] }>('GET', '/api/v1/secrets', undefined, memberToken)).json.items).toEqual([]);
    const foreign = await p.request<ErrorJson>('POST', '/api/v1/agents', { name: uniqueName('x'), image: busybox, command: ['true'], env: { K: { secretRef: 'openai' } } }, memberToken);
    expect(foreign.status, foreign.text).toBe(404);
    expect(foreign.json.error.code).toBe('SECRET_NOT_FOUND');
    expect((await p.request('POST', '/api/v1/secrets', { name: 'Bad Name', value: 'x' })).status).toBe(400);
    expect((await p.request('POST', '/api/v1/secrets', { name: 'ok', value: 'x', extra: true })).status).toBe(400);
  });

  it('resolves a secretRef only into the container; API, events, logs and the store never hold the value', async () => {
    const agent = await p.create({ name: uniqueName('sec'), image: busybox, command: ['sh', '-c', 'sleep 3600'], env: { PLAIN: 'visible', OPENAI_API_KEY: { secretRef: { name: 'openai' } } } });
    expect(agent.spec.env).toEqual({ PLAIN: 'visible', OPENAI_API_KEY: { secretRef: 'openai' } });
    const running = await p.waitRunning(agent.id);
    const env = await dockerExec(running.status.containerId!, ['sh', '-c', 'echo "$OPENAI_API_KEY"']);
    expect(env.stdout.trim()).toBe(secretValue);
    expect(running.status.isolation).toBe('runc');
    for (const path of [`/api/v1/agents/${agent.id}`, `/api/v1/agents/${agent.id}/events`, '/api/v1/agents', `/api/v1/agents/${agent.id}/egress`]) {
      const res = await p.request('GET', path);
      expect(res.text, path).not.toContain(secretValue);
    }
    await p.platform.security.auditSink.flush();
    expect(p.logText.length).toBeGreaterThan(1000);
    expect(p.logText).not.toContain(secretValue);
    expect((await allBytes(p.dataDir)).includes(Buffer.from(secretValue))).toBe(false);
    // Deleting the secret: a new agent that refers to it is refused at create.
    expect((await p.request('DELETE', '/api/v1/secrets/openai')).status).toBe(200);
    expect((await p.request('DELETE', '/api/v1/secrets/openai')).status).toBe(404);
    const orphan = await p.request<ErrorJson>('POST', '/api/v1/agents', { name: uniqueName('gone'), image: busybox, command: ['true'], env: { K: { secretRef: 'openai' } } });
    expect(orphan.status).toBe(404);
  }, 120_000);

  it('exposes ports on 127.0.0.1 only, with the host port in status.endpoints', async () => {
    const server = "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(8)\nwhile True:\n    c,_=s.accept(); c.sendall(b'hello\\n'); c.close()";
    const agent = await p.create({ name: uniqueName('web'), image: PYTHON_IMAGE, command: ['python3', '-c', server], expose: [{ port: 8080 }] });
    const running = await p.waitFor(agent.id, (a) => a.status.phase === 'Running' && (a.status.endpoints?.length ?? 0) > 0, 90_000, 'endpoint');
    const [endpoint] = running.status.endpoints!;
    expect(endpoint).toMatchObject({ port: 8080, hostIp: '127.0.0.1' });
    let answered = false;
    for (let i = 0; i < 40 && !answered; i++) {
      answered = await canConnect('127.0.0.1', endpoint!.hostPort);
      if (!answered) await new Promise((r) => setTimeout(r, 250));
    }
    expect(answered).toBe(true);
    const external = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address;
    if (external) expect(await canConnect(external, endpoint!.hostPort)).toBe(false);
    // Docker published nothing (no 0.0.0.0 binding behind the relay's back).
    const info = await p.docker.getContainer(running.status.containerId!).inspect();
    expect(info.HostConfig.PortBindings ?? {}).toEqual({});
    expect(info.NetworkSettings.Ports ?? {}).toEqual({});
    // And an expose-only agent (network mode none) has no egress: the proxy does not know it.
    expect(running.spec.network).toEqual({ mode: 'none' });
    expect(running.status.isolation).toBe('runc');
  }, 120_000);
});

describe.skipIf(!hasGvisor)('AGENT_PLATFORM_MIN_ISOLATION=gvisor', () => {
  let p: SecurityPlatform;
  beforeAll(async () => {
    p = await SecurityPlatform.start({ env: { AGENT_PLATFORM_MIN_ISOLATION: 'gvisor' } });
  }, 120_000);
  afterAll(async () => {
    await p?.close();
  }, 60_000);

  it('raises an agent that asks for runc to gvisor and reports it', async () => {
    const busybox = await ensureBusyboxImage();
    const agent = await p.create({ name: uniqueName('min'), image: busybox, isolation: 'runc', command: ['sh', '-c', 'sleep 3600'] });
    expect(agent.spec.isolation).toBe('runc');
    const running = await p.waitRunning(agent.id, 120_000);
    expect(running.status.isolation).toBe('gvisor');
    const info = await p.docker.getContainer(running.status.containerId!).inspect();
    expect(info.HostConfig.Runtime).toBe('runsc');
    expect(info.HostConfig.NetworkMode).toBe('none');
    // gVisor's own kernel answers, not the host's.
    const dmesg = await dockerExec(running.status.containerId!, ['dmesg']);
    expect(dmesg.stdout + dmesg.stderr).toMatch(/gVisor|Starting gVisor/i);
  }, 180_000);
});
