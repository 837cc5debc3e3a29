import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { EgressProxy } from '../../src/egress/egress-proxy.js';
import { MemoryAuditSink } from '../../src/egress/memory-audit-sink.js';
import { ClusterEgressAuthenticator } from '../../src/security/cluster-egress.js';
import { EgressCredentials } from '../../src/security/egress-credentials.js';
import { loadSecretCipher } from '../../src/security/secret-keyring.js';
import { echoRoundTrip, readToEnd, startEchoServer, startOriginServer } from '../egress/egress-harness.js';
import { EGRESS_ALLOWLIST, EGRESS_LABEL } from '../../src/runtime/kubernetes/kube-names.js';
import { MANAGED_LABEL } from '../../src/runtime/runtime.js';
import { FakeKubeApiServer } from './fake-kube-apiserver.js';
import { validateKubeObject } from './validate-kube-object.js';
import { waitFor } from '../helpers/wait-for.js';

/**
 * Allowlist egress of agents on a Kubernetes node, end to end: the whole platform on the
 * FAKE Kubernetes API server (test/kubernetes/fake-kube-apiserver.ts; no real cluster runs
 * here) with the REAL egress proxy on its cluster listener (AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN
 * on loopback), real SQLite, and local origin servers named through the proxy's test hosts
 * file. The test acts as the Pod: it reads HTTP_PROXY from the Pod the platform created and
 * connects with it, the address swapped for the listener's (what the Service in front of the
 * platform does on a cluster).
 */

const run = promisify(execFile);
const IMAGE = 'agent-platform/busybox:latest';
/** The node config's egressProxy: the Service address Pods are given (unreachable here). */
const SERVICE = { cidr: '10.96.12.7/32', port: 3128 };
/** KUBERNETES_SERVICE_HOST as a Pod would have it (the API server's Service; unreachable here). */
const KUBE_SERVICE_HOST = '10.96.0.1';
/** The operator's AGENT_PLATFORM_EGRESS_DENIED_RANGES (e.g. the database's Pod network). */
const OPERATOR_DENIED = '10.20.0.0/16';

interface AgentJson {
  id: string;
  tenantId: string;
  status: { phase: string; node?: string };
  [key: string]: unknown;
}
interface EgressItem {
  host: string;
  port: number | null;
  decision: 'allow' | 'deny';
  reason: string;
  detail?: string;
  httpStatus?: number;
  method: string;
  bytesDown: number;
}

/** Sends `CONNECT target` with optional extra header lines; returns the status, head and body (or open tunnel). */
async function connectVia(proxy: { host: string; port: number }, target: string, headers: string[] = []): Promise<{ statusCode: number; head: string; body: string; socket: Socket }> {
  const signal = AbortSignal.timeout(10_000);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: proxy.host, port: proxy.port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  socket.on('error', () => undefined);
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`);
  let buffer = Buffer.alloc(0);
  while (buffer.indexOf('\r\n\r\n') < 0) {
    const chunk = await new Promise<Buffer | undefined>((resolve, reject) => {
      socket.once('data', resolve);
      socket.once('close', () => resolve(undefined));
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    if (chunk === undefined) throw new Error(`proxy closed before a response head: ${JSON.stringify(buffer.toString('latin1'))}`);
    buffer = Buffer.concat([buffer, chunk]);
  }
  socket.pause();
  const end = buffer.indexOf('\r\n\r\n');
  const head = buffer.subarray(0, end).toString('latin1');
  const rest = buffer.subarray(end + 4);
  const statusCode = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  if (statusCode === 200) {
    if (rest.length > 0) socket.unshift(rest);
    return { statusCode, head, body: '', socket };
  }
  return { statusCode, head, body: Buffer.concat([rest, await readToEnd(socket, signal)]).toString('utf8'), socket };
}

/** `Proxy-Authorization` as clients build it from a proxy URL's userinfo (percent-decoded, then Basic). */
const basicFrom = (proxyUrl: URL): string => `Proxy-Authorization: Basic ${Buffer.from(`${decodeURIComponent(proxyUrl.username)}:${decodeURIComponent(proxyUrl.password)}`).toString('base64')}`;
const basic = (user: string, password: string): string => `Proxy-Authorization: Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/**
 * A plain-HTTP request through the proxy (absolute form), with optional proxy credentials.
 * On a new connection unless `agent` is a keep-alive agent: the proxy checks credentials and
 * reads the policy once per client connection.
 */
function httpVia(
  proxy: { host: string; port: number },
  url: string,
  authorization?: string,
  agent: HttpAgent | false = false,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string; reusedSocket: boolean }> {
  return new Promise((resolve, reject) => {
    // As a client talking to a proxy sends it: Host names the destination, not the proxy.
    const headers: Record<string, string> = { host: new URL(url).host };
    if (authorization !== undefined) headers['proxy-authorization'] = authorization.replace(/^Proxy-Authorization: /, '');
    const req = httpRequest({ host: proxy.host, port: proxy.port, method: 'GET', path: url, headers, timeout: 10_000, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), reusedSocket: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

describe.sequential('allowlist egress of agents on a Kubernetes node (fake API server, real proxy)', () => {
  let fake: FakeKubeApiServer;
  let platform: Platform;
  let dir: string;
  let token: string;
  let baseUrl: string;
  let listener: { host: string; port: number };
  let origin: Awaited<ReturnType<typeof startOriginServer>>;
  let denied: Awaited<ReturnType<typeof startOriginServer>>;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T; text: string }> => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : undefined) as T, text };
  };
  const create = async (name: string, allow: string[]): Promise<AgentJson> => {
    const res = await api<AgentJson>('POST', '/api/v1/agents', { name, image: IMAGE, command: ['sh', '-c', 'sleep 300'], restartPolicy: 'Never', resources: { cpu: '100m', memory: '32Mi' }, network: { mode: 'allowlist', allow } });
    expect(res.status, res.text).toBe(201);
    return res.json;
  };
  const waitRunning = (id: string) =>
    waitFor(`agent ${id} Running`, async () => {
      const a = (await api<AgentJson>('GET', `/api/v1/agents/${id}`)).json;
      return a.status.phase === 'Running' ? a : undefined;
    });
  /** The Pod's HTTP_PROXY as the platform wrote it. */
  const podProxyUrl = (id: string): URL => {
    const pod = fake.get('pods', 'ap-default', `ap-${id}`)!;
    const env = Object.fromEntries((pod.spec.containers[0].env ?? []).map((e: { name: string; value: string }) => [e.name, e.value])) as Record<string, string>;
    expect(env.HTTPS_PROXY).toBe(env.HTTP_PROXY);
    expect(env.http_proxy).toBe(env.HTTP_PROXY);
    return new URL(env.HTTP_PROXY!);
  };
  /** The Pod's proxy URL with the Service address replaced by the listener's. */
  const asSeenThroughService = (url: URL): URL => {
    const out = new URL(url);
    out.hostname = listener.host;
    out.port = String(listener.port);
    return out;
  };
  const egressOf = async (id: string): Promise<{ items: EgressItem[]; text: string }> => {
    const res = await api<{ items: EgressItem[] }>('GET', `/api/v1/agents/${id}/egress?limit=1000`);
    expect(res.status, res.text).toBe(200);
    return { items: res.json.items, text: res.text };
  };

  beforeAll(async () => {
    origin = await startOriginServer();
    denied = await startOriginServer();
    echo = await startEchoServer();
    fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 200 });
    dir = mkdtempSync(join(tmpdir(), 'ap-k8s-egress-'));
    const hostsFile = join(dir, 'hosts');
    // kubeapi.test: a name an agent controls pointing at the API server (DNS rebinding).
    writeFileSync(hostsFile, `127.0.0.1 allowed.test\n127.0.0.1 denied.test\n${KUBE_SERVICE_HOST} kubeapi.test\n`);
    token = `k8s_${randomBytes(16).toString('hex')}`;
    const config = loadConfig({
      AGENT_PLATFORM_DATA_DIR: join(dir, 'data'),
      AGENT_PLATFORM_ADMIN_TOKEN: token,
      AGENT_PLATFORM_PORT: '0',
      AGENT_PLATFORM_LOG_LEVEL: 'silent',
      AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
      AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: '500',
      AGENT_PLATFORM_STOP_GRACE_MS: '1000',
      AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN: '127.0.0.1:0',
      AGENT_PLATFORM_EGRESS_DENIED_RANGES: OPERATOR_DENIED,
      KUBERNETES_SERVICE_HOST: KUBE_SERVICE_HOST,
      AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'kubernetes', id: 'k8s-egress', kubeconfig: fake.writeKubeconfig(dir, 'fake-ctx'), context: 'fake-ctx', egressProxy: SERVICE }]),
    });
    // The hosts file maps the test names to 127.0.0.1, which only a trusted hosts file may (tests only).
    platform = await buildPlatform(config, { security: { egressHostsFile: hostsFile, trustEgressHostsFile: true } });
    baseUrl = (await platform.start()).replace('[::1]', '127.0.0.1');
    const address = platform.security.clusterEgress?.address;
    expect(address, 'the cluster egress listener runs').toBeDefined();
    listener = { host: address!.host, port: address!.port };
  }, 30_000);

  afterAll(async () => {
    await platform?.close();
    await fake?.close();
    await origin?.close();
    await denied?.close();
    await echo?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('gives the Pod a proxy URL with its agent id and a token, and lets only allowlisted destinations through it', async () => {
    const a = await create('k8s-allow', [`allowed.test:${origin.port}`, `allowed.test:${echo.port}`]);
    const b = await create('k8s-other', [`denied.test:${denied.port}`]);
    await waitRunning(a.id);
    await waitRunning(b.id);

    const url = podProxyUrl(a.id);
    expect(url.hostname).toBe('10.96.12.7');
    expect(url.port).toBe('3128');
    expect(url.username).toBe(a.id);
    expect(url.password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const tokenA = url.password;
    const tokenB = podProxyUrl(b.id).password;
    expect(tokenB).not.toBe(tokenA);
    const proxyUrl = asSeenThroughService(url);

    // A real client (curl) with the Pod's proxy URL: plain HTTP to the allowed origin.
    const viaCurl = await run('curl', ['-sS', '--max-time', '10', '-x', proxyUrl.toString(), `http://allowed.test:${origin.port}/from-curl`]);
    expect(JSON.parse(viaCurl.stdout)).toMatchObject({ method: 'GET', url: '/from-curl' });
    // The token stops at the proxy: the origin never sees Proxy-Authorization.
    expect(origin.requests.at(-1)!.headers).not.toHaveProperty('proxy-authorization');

    // CONNECT to an allowed port: a working tunnel.
    const tunnel = await connectVia(listener, `allowed.test:${echo.port}`, [basicFrom(proxyUrl)]);
    expect(tunnel.statusCode, tunnel.body).toBe(200);
    expect((await echoRoundTrip(tunnel.socket, Buffer.from('ping-through-k8s'))).toString()).toBe('ping-through-k8s');
    tunnel.socket.destroy();

    // Not on the list: 403, the same local server under another name and another port.
    const notListed = await connectVia(listener, `denied.test:${denied.port}`, [basicFrom(proxyUrl)]);
    expect(notListed.statusCode).toBe(403);
    expect(notListed.body).toContain(`egress to denied.test:${denied.port} denied: not in allowlist`);
    const viaCurlDenied = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', '-x', proxyUrl.toString(), `http://denied.test:${denied.port}/`]);
    expect(viaCurlDenied.stdout).toBe('403');
    expect(denied.requests).toHaveLength(0);

    // B's own list allows denied.test: the proxy tells the agents apart by their credentials.
    const asB = await httpVia(listener, `http://denied.test:${denied.port}/as-b`, basic(b.id, tokenB));
    expect(asB.status, asB.body).toBe(200);
    expect(denied.requests).toHaveLength(1);
  });

  it('answers 407 with a challenge to missing, malformed or wrong credentials, and to another agent\'s id with this token', async () => {
    const list = (await api<{ items: (AgentJson & { name: string })[] }>('GET', '/api/v1/agents')).json.items;
    const a = list.find((i) => i.name === 'k8s-allow')!;
    const b = list.find((i) => i.name === 'k8s-other')!;
    const tokenA = podProxyUrl(a.id).password;
    const target = `allowed.test:${echo.port}`;
    const before = origin.requests.length;

    const cases: { name: string; headers: string[]; detail: RegExp }[] = [
      { name: 'missing', headers: [], detail: /proxy credentials required/ },
      { name: 'not Basic', headers: [`Proxy-Authorization: Bearer ${tokenA}`], detail: /scheme "Bearer" is not supported|not "Basic <base64>"/ },
      { name: 'wrong token', headers: [basic(a.id, `${tokenA.slice(0, -2)}xx`)], detail: new RegExp(`proxy credentials for agent ${a.id} are not valid`) },
      { name: 'another agent\'s id with this token', headers: [basic(b.id, tokenA)], detail: new RegExp(`proxy credentials for agent ${b.id} are not valid`) },
      { name: 'unknown agent', headers: [basic('zzzzzzzzzzzz', tokenA)], detail: /proxy credentials for agent zzzzzzzzzzzz are not valid/ },
      { name: 'token as user name', headers: [basic(tokenA, '')], detail: /the user name is not an agent id/ },
    ];
    for (const c of cases) {
      const reply = await connectVia(listener, target, c.headers);
      expect(reply.statusCode, c.name).toBe(407);
      expect(reply.head, c.name).toMatch(/\r\nProxy-Authenticate: Basic realm="agent-platform egress"/i);
      expect(reply.body, c.name).toMatch(c.detail);
      expect(reply.body, c.name).not.toContain(tokenA);
    }
    const plain = await httpVia(listener, `http://allowed.test:${origin.port}/no-creds`);
    expect(plain.status).toBe(407);
    expect(plain.headers['proxy-authenticate']).toMatch(/^Basic realm="agent-platform egress"/);
    const plainWrong = await httpVia(listener, `http://allowed.test:${origin.port}/wrong`, basic(b.id, tokenA));
    expect(plainWrong.status).toBe(407);
    expect(origin.requests.length).toBe(before);

    // Each refusal is audited, under no agent (the credentials proved no identity), without the token.
    await platform.security.auditSink.flush();
    const refused = (await platform.store.listEgressAudit({ limit: 1000 })).filter((r) => r.reason === 'proxy-auth-required');
    expect(refused.length).toBeGreaterThanOrEqual(cases.length + 2);
    for (const r of refused) {
      expect(r.agentId).toBeNull();
      expect(r.httpStatus).toBe(407);
      expect(JSON.stringify(r)).not.toContain(tokenA);
    }
  });

  it('shows the attempts at GET /api/v1/agents/{id}/egress, without the token anywhere in the API', async () => {
    const list = (await api<{ items: (AgentJson & { name: string })[] }>('GET', '/api/v1/agents')).json.items;
    const a = list.find((i) => i.name === 'k8s-allow')!;
    const tokenA = podProxyUrl(a.id).password;
    await platform.security.auditSink.flush();
    const egress = await egressOf(a.id);
    expect(egress.items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ method: 'HTTP', host: 'allowed.test', port: origin.port, decision: 'allow', reason: 'allowed', httpStatus: 200 }),
        expect.objectContaining({ method: 'CONNECT', host: 'allowed.test', port: echo.port, decision: 'allow', reason: 'allowed', httpStatus: 200 }),
        expect.objectContaining({ method: 'CONNECT', host: 'denied.test', port: denied.port, decision: 'deny', reason: 'not-in-allowlist', httpStatus: 403 }),
        expect.objectContaining({ method: 'HTTP', host: 'denied.test', port: denied.port, decision: 'deny', reason: 'not-in-allowlist', httpStatus: 403 }),
      ]),
    );
    // The other agent's allowed request is its own, not A's.
    expect(egress.items.some((i) => i.host === 'denied.test' && i.decision === 'allow')).toBe(false);
    expect(egress.text).not.toContain(tokenA);
    // Neither the agent's representation nor its events carry the token.
    const agentText = (await api('GET', `/api/v1/agents/${a.id}`)).text;
    expect(agentText).not.toContain(tokenA);
    const events = await api('GET', `/api/v1/agents/${a.id}/events`);
    expect(events.status, events.text).toBe(200);
    expect(events.text).not.toContain(tokenA);
  });

  it('applies a PATCH of the allowlist to the next connection', async () => {
    const list = (await api<{ items: (AgentJson & { name: string })[] }>('GET', '/api/v1/agents')).json.items;
    const a = list.find((i) => i.name === 'k8s-allow')!;
    const proxyUrl = asSeenThroughService(podProxyUrl(a.id));
    const target = `http://denied.test:${denied.port}/after-patch`;
    expect((await httpVia(listener, target, basicFrom(proxyUrl))).status).toBe(403);

    const patched = await api('PATCH', `/api/v1/agents/${a.id}`, { network: { allow: [`allowed.test:${origin.port}`, `denied.test:${denied.port}`] } });
    expect(patched.status, patched.text).toBe(200);
    // No wait: the very next connection reads the new list.
    const after = await httpVia(listener, target, basicFrom(proxyUrl));
    expect(after.status, after.body).toBe(200);
    expect(JSON.parse(after.body)).toMatchObject({ url: '/after-patch' });
    // The Pod's URL did not change: the token is not tied to the allowlist.
    expect(podProxyUrl(a.id).password).toBe(proxyUrl.password);

    // Narrowed again: the next connection is refused.
    expect((await api('PATCH', `/api/v1/agents/${a.id}`, { network: { allow: [`allowed.test:${origin.port}`] } })).status).toBe(200);
    expect((await httpVia(listener, target, basicFrom(proxyUrl))).status).toBe(403);
  });

  it('refuses the platform\'s own services to any rule: loopback, PostgreSQL, Redis, metadata, the Kubernetes API, the operator\'s ranges (403, audited)', async () => {
    const apiPort = Number(new URL(baseUrl).port);
    // What a tenant may write: address rules naming exactly what the platform Pod reaches.
    const targets = [
      `127.0.0.1:${apiPort}`, // the platform's own API on its loopback
      `127.0.0.1:${listener.port}`, // the proxy itself
      '127.0.0.1:5432', // PostgreSQL (this machine's, where the tests run it)
      '127.0.0.1:6379', // Redis
      `[::1]:${apiPort}`,
      `0.0.0.0:${apiPort}`,
      '169.254.169.254:80', // cloud metadata
      `${KUBE_SERVICE_HOST}:443`, // KUBERNETES_SERVICE_HOST
      `10.20.30.40:5432`, // inside the operator's AGENT_PLATFORM_EGRESS_DENIED_RANGES
      'kubeapi.test:443', // a name resolving to the API server
    ];
    const agent = await create('k8s-platform', [...targets, '127.0.0.0/8:1-65535', '169.254.0.0/16:80', '10.0.0.0/8:1-65535']);
    await waitRunning(agent.id);
    const creds = basicFrom(asSeenThroughService(podProxyUrl(agent.id)));
    for (const target of targets) {
      const reply = await connectVia(listener, target, [creds]);
      expect(reply.statusCode, `${target}: ${reply.body}`).toBe(403);
      expect(reply.body, target).toMatch(/denied: .*(reserved for the platform|addresses are the platform's own)/);
    }
    const plain = await httpVia(listener, `http://127.0.0.1:${apiPort}/healthz`, creds);
    expect(plain.status, plain.body).toBe(403);

    await platform.security.auditSink.flush();
    const { items } = await egressOf(agent.id);
    for (const target of targets) {
      const host = target.slice(0, target.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
      const port = Number(target.slice(target.lastIndexOf(':') + 1));
      expect(items, target).toContainEqual(expect.objectContaining({ method: 'CONNECT', host, port, decision: 'deny', reason: 'denied-range', httpStatus: 403 }));
    }
    expect(items.filter((i) => i.decision === 'allow')).toEqual([]);
  });

  it('checks credentials once per keep-alive connection: a PATCH applies to the next new connection', async () => {
    const agent = await create('k8s-keepalive', [`allowed.test:${origin.port}`]);
    await waitRunning(agent.id);
    const creds = basicFrom(asSeenThroughService(podProxyUrl(agent.id)));
    const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    // Credential checks (each one store read of the agent); the controller's own reads of it do not count.
    const checks = vi.spyOn(ClusterEgressAuthenticator.prototype, 'authenticate');
    try {
      const allowedUrl = `http://allowed.test:${origin.port}/ka`;
      const deniedUrl = `http://denied.test:${denied.port}/ka`;
      const first = await httpVia(listener, allowedUrl, creds, keepAlive);
      expect(first.status, first.body).toBe(200);
      const readsOfAgent = (): number => checks.mock.calls.filter(([c]) => c.username === agent.id).length;
      expect(readsOfAgent()).toBe(1);
      const second = await httpVia(listener, allowedUrl, creds, keepAlive);
      expect(second.status).toBe(200);
      expect(second.reusedSocket).toBe(true);
      expect(readsOfAgent()).toBe(1);

      const patched = await api('PATCH', `/api/v1/agents/${agent.id}`, { network: { allow: [`allowed.test:${origin.port}`, `denied.test:${denied.port}`] } });
      expect(patched.status, patched.text).toBe(200);
      // The open connection keeps the policy it was opened with (for credentialRecheckMs, 5 s; see the next test) ...
      const onOld = await httpVia(listener, deniedUrl, creds, keepAlive);
      expect(onOld.reusedSocket).toBe(true);
      expect(onOld.status).toBe(403);
      // ... and the next new connection reads the new one.
      const onNew = await httpVia(listener, deniedUrl, creds);
      expect(onNew.status, onNew.body).toBe(200);
      expect(readsOfAgent()).toBe(2);
    } finally {
      checks.mockRestore();
      keepAlive.destroy();
    }
  });

  it('checks a keep-alive connection the client keeps busy again after 5 s: a narrowing PATCH then applies to it', async () => {
    const agent = await create('k8s-busy', [`allowed.test:${origin.port}`, `denied.test:${denied.port}`]);
    await waitRunning(agent.id);
    const creds = basicFrom(asSeenThroughService(podProxyUrl(agent.id)));
    const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      const allowedUrl = `http://allowed.test:${origin.port}/busy`;
      const deniedUrl = `http://denied.test:${denied.port}/busy`;
      const checkedAt = Date.now();
      expect((await httpVia(listener, deniedUrl, creds, keepAlive)).status).toBe(200);
      expect((await api('PATCH', `/api/v1/agents/${agent.id}`, { network: { allow: [`allowed.test:${origin.port}`] } })).status).toBe(200);
      // The next request on the same connection, within 5 s, still rides on the first check.
      expect(await httpVia(listener, deniedUrl, creds, keepAlive)).toMatchObject({ status: 200, reusedSocket: true });
      // Keep the connection busy (one request a second, under the server's 5 s keep-alive
      // timeout) until the check is older than the proxy's default credentialRecheckMs.
      while (Date.now() - checkedAt < 5_500) {
        await new Promise((r) => setTimeout(r, 1_000));
        expect(await httpVia(listener, allowedUrl, creds, keepAlive)).toMatchObject({ status: 200, reusedSocket: true });
      }
      const onOld = await httpVia(listener, deniedUrl, creds, keepAlive);
      expect(onOld.reusedSocket).toBe(true);
      expect(onOld.status, onOld.body).toBe(403);
      expect(onOld.body).toContain(`egress to denied.test:${denied.port} denied: not in allowlist`);
    } finally {
      keepAlive.destroy();
    }
  }, 20_000);

  it('shares one store read among overlapping checks of an agent, and caps store reads in flight over all clients (503, audited)', async () => {
    const list = (await api<{ items: (AgentJson & { name: string })[] }>('GET', '/api/v1/agents')).json.items;
    const a = list.find((i) => i.name === 'k8s-allow')!;
    const creds = basicFrom(asSeenThroughService(podProxyUrl(a.id)));
    // Tunnels to the origin (still on A's list after the PATCH test above; the tunnel is all that is tested).
    // The platform's own store behind a gate, counting reads: a slow database.
    const reads: string[] = [];
    let open!: () => void;
    let gate = new Promise<void>((resolve) => (open = resolve));
    const store = {
      getAgent: async (id: string) => {
        reads.push(id);
        await gate;
        return platform.store.getAgent(id);
      },
    };
    const authenticator = new ClusterEgressAuthenticator({
      store,
      credentials: EgressCredentials.fromCipher(loadSecretCipher({ dataDir: join(dir, 'data') })),
      isClusterNode: (id) => id === 'k8s-egress',
      maxStoreReadsInFlight: 1,
    });
    const sink = new MemoryAuditSink(100);
    const proxy = new EgressProxy({ auditSink: sink, hostsFile: join(dir, 'hosts'), trustHostsFile: true, maxAuthenticationsPerSource: 64 });
    // A second proxy on the same authenticator whose clients give up after 300 ms.
    const impatient = new EgressProxy({ auditSink: sink, authTimeoutMs: 300 });
    try {
      // Counts the checks that reached the authenticator, to know the burst is all waiting.
      let checks = 0;
      const counted = { authenticate: (c: Parameters<ClusterEgressAuthenticator['authenticate']>[0], signal: AbortSignal) => ((checks += 1), authenticator.authenticate(c, signal)) };
      const own = await proxy.listen({ host: '127.0.0.1', port: 0, authenticate: counted });
      const short = await impatient.listen({ host: '127.0.0.1', port: 0, authenticate: authenticator });
      const burst = Array.from({ length: 8 }, () => connectVia(own, `allowed.test:${origin.port}`, [creds]));
      await waitFor('the burst to reach the authenticator', async () => (checks === 8 ? true : undefined));
      expect(reads).toEqual([a.id]);
      // Another agent while the read is in flight: refused at once, without a read.
      const started = Date.now();
      const other = await connectVia(own, `allowed.test:${echo.port}`, [basic('zzzzzzzzzzzz', 'x'.repeat(43))]);
      expect(other.statusCode, other.body).toBe(503);
      expect(other.body).toContain('1 proxy credential checks are reading the store already; retry');
      expect(Date.now() - started).toBeLessThan(2_000);
      open();
      const replies = await Promise.all(burst);
      expect(replies.map((r) => r.statusCode)).toEqual(replies.map(() => 200));
      for (const r of replies) r.socket.destroy();
      // Eight connections of one agent, one read.
      expect(reads).toEqual([a.id]);
      expect(authenticator.storeReadsInFlight).toBe(0);
      expect(sink.entries().filter((e) => e.reason === 'auth-unavailable')).toEqual([expect.objectContaining({ agentId: null, httpStatus: 503, decision: 'deny' })]);

      // A read whose client gave up still holds its slot until the store answers: reads do not pile up.
      gate = new Promise<void>((resolve) => (open = resolve));
      const timedOut = await connectVia(short, `allowed.test:${origin.port}`, [creds]);
      expect(timedOut.statusCode).toBe(503);
      expect(timedOut.body).toContain('proxy credentials could not be checked within 300 ms; retry');
      expect(authenticator.storeReadsInFlight).toBe(1);
      const meanwhile = await connectVia(own, `allowed.test:${echo.port}`, [basic('yyyyyyyyyyyy', 'x'.repeat(43))]);
      expect(meanwhile.statusCode).toBe(503);
      expect(meanwhile.body).toContain('reading the store already; retry');
      expect(reads).toEqual([a.id, a.id]);
      open();
      await waitFor('the late read to finish', async () => (authenticator.storeReadsInFlight === 0 ? true : undefined));
      const after = await connectVia(own, `allowed.test:${origin.port}`, [creds]);
      expect(after.statusCode, after.body).toBe(200);
      after.socket.destroy();
      expect(reads).toEqual([a.id, a.id, a.id]);
    } finally {
      open();
      await proxy.close();
      await impatient.close();
    }
  });

  it('reads the store once for an unknown agent id within a few seconds, and still answers 407 alike', async () => {
    const reads = vi.spyOn(platform.store, 'getAgent');
    try {
      const unknownId = `q${randomBytes(8).toString('hex')}`;
      for (let i = 0; i < 5; i += 1) {
        const reply = await connectVia(listener, `allowed.test:${echo.port}`, [basic(unknownId, 'x'.repeat(43))]);
        expect(reply.statusCode).toBe(407);
        expect(reply.body).toContain(`proxy credentials for agent ${unknownId} are not valid`);
      }
      expect(reads.mock.calls.filter(([id]) => id === unknownId)).toHaveLength(1);
    } finally {
      reads.mockRestore();
    }
  });

  it('refuses the credentials of an agent that no longer runs (403 while stopped, 407 once deleted)', async () => {
    const list = (await api<{ items: (AgentJson & { name: string })[] }>('GET', '/api/v1/agents')).json.items;
    const b = list.find((i) => i.name === 'k8s-other')!;
    const creds = basicFrom(asSeenThroughService(podProxyUrl(b.id)));
    const target = `http://denied.test:${denied.port}/`;
    expect((await httpVia(listener, target, creds)).status).toBe(200);

    expect((await api('POST', `/api/v1/agents/${b.id}/stop`)).status).toBeLessThan(300);
    await waitFor('Stopped', async () => ((await api<AgentJson>('GET', `/api/v1/agents/${b.id}`)).json.status.phase === 'Stopped' ? true : undefined));
    const stopped = await httpVia(listener, target, creds);
    expect(stopped.status).toBe(403);
    expect(stopped.body).toMatch(new RegExp(`agent ${b.id} is Stopped, not running`));
    await platform.security.auditSink.flush();
    expect((await egressOf(b.id)).items.at(-1)).toMatchObject({ decision: 'deny', reason: 'unknown-source', httpStatus: 403 });

    expect((await api('DELETE', `/api/v1/agents/${b.id}`)).status).toBeLessThan(300);
    await waitFor('the agent to be gone', async () => ((await api('GET', `/api/v1/agents/${b.id}`)).status === 404 ? true : undefined));
    expect((await httpVia(listener, target, creds)).status).toBe(407);
  });
});

describe('deploy/kubernetes: the egress listener behind the platform Service', () => {
  const doc = (file: string): any => {
    const [first] = parseAllDocuments(readFileSync(join(import.meta.dirname, '../../deploy/kubernetes/base', file), 'utf8')).map((d) => d.toJS());
    validateKubeObject(first);
    return first;
  };

  it('listens where the Deployment\'s "egress" port points, which the Service publishes and the platform NetworkPolicy admits from allowlist agents', () => {
    const listen = loadConfig({ AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN: doc('configmap.yaml').data.AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN }).egressClusterListen;
    expect(listen).toEqual({ host: '0.0.0.0', port: 3128 });
    const containerPort = doc('deployment.yaml').spec.template.spec.containers[0].ports.find((p: { name: string }) => p.name === 'egress');
    expect(containerPort).toEqual({ name: 'egress', containerPort: listen!.port, protocol: 'TCP' });
    expect(doc('service.yaml').spec.ports).toContainEqual({ name: 'egress', port: 3128, targetPort: 'egress', protocol: 'TCP' });
    const ingress = doc('networkpolicy.yaml').spec.ingress as { from?: unknown[]; ports: { port: number }[] }[];
    const rule = ingress.find((r) => r.ports.some((p) => p.port === listen!.port));
    expect(rule?.from).toEqual([{ namespaceSelector: { matchLabels: { [MANAGED_LABEL]: 'true' } }, podSelector: { matchLabels: { [EGRESS_LABEL]: EGRESS_ALLOWLIST } } }]);
  });

  it('refuses a malformed AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN, naming the variable', () => {
    for (const bad of ['3128', 'host:', 'host:99999', '::1:3128']) {
      expect(() => loadConfig({ AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN: bad }), bad).toThrow(/AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN/);
    }
    expect(loadConfig({ AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN: '[::]:3128' }).egressClusterListen).toEqual({ host: '::', port: 3128 });
    expect(loadConfig({}).egressClusterListen).toBeUndefined();
  });
});
