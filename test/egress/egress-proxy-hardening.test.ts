import { request, Agent as HttpAgent } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { PLATFORM_LOCAL_CLASSES } from '../../src/egress/address-policy.js';
import { compileAllowlist } from '../../src/egress/allowlist.js';
import { parseCidr, type Cidr } from '../../src/egress/cidr.js';
import type { EgressAuditRecord } from '../../src/egress/egress-audit.js';
import type { ProxyAuthenticator, ProxyAuthResult } from '../../src/egress/egress-proxy.js';
import type { ProxyCredentials } from '../../src/egress/proxy-authorization.js';
import { ManualClock } from '../../src/domain/clock.js';
import { connectThrough, openClient, startEchoServer, startOriginServer, startProxy, waitSignal } from './egress-harness.js';

/**
 * The hardening of the platform's egress proxies (security review): address classes and
 * platform addresses no rule unlocks, and the credential listener's bounds on what an
 * unauthenticated client may cost (checks in flight per address, time per check, one check
 * per keep-alive connection and credentialRecheckMs). Real proxy, real sockets; the authenticators are small
 * implementations of the ProxyAuthenticator contract (the store-backed one is exercised
 * in test/kubernetes/egress-on-kubernetes.test.ts).
 */

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

const byReason = (reason: EgressAuditRecord['reason']) => (e: EgressAuditRecord) => e.reason === reason;
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Accepts `agent1` / `secret` with the given rules; counts calls; optionally waits on a gate first. */
class CountingAuthenticator implements ProxyAuthenticator {
  calls = 0;
  signals: AbortSignal[] = [];
  gate: Promise<void> | undefined;
  /** The agent's allowlist as "the store" holds it now; a test may narrow it. */
  constructor(public rules: string[]) {}
  async authenticate(credentials: ProxyCredentials, signal: AbortSignal): Promise<ProxyAuthResult> {
    this.calls += 1;
    this.signals.push(signal);
    if (this.gate !== undefined) await this.gate;
    if (credentials.username !== 'agent1' || credentials.password !== 'secret') return { ok: false, reason: 'bad-credentials', detail: 'proxy credentials are not valid' };
    return { ok: true, policy: { agentId: 'agent1', tenantId: 't1', allowlist: compileAllowlist(this.rules) } };
  }
}

/** A raw CONNECT with Proxy-Authorization; returns status, body (or open tunnel). */
async function connectWithCredentials(port: number, target: string, authorization: string) {
  const socket = await openClient(port);
  socket.on('error', () => undefined);
  const done = new Promise<string>((resolve) => {
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (/^HTTP\/1\.1 200/.test(text) && text.includes('\r\n\r\n')) resolve(text);
    });
    socket.once('close', () => resolve(text));
  });
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${authorization}\r\n\r\n`);
  const text = await done;
  return { statusCode: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text, socket };
}

type Reply = { statusCode: number; body: string; reusedSocket: boolean; localPort: number | undefined };

/** A plain-HTTP request through the proxy with the given agent (keep-alive or not). */
function httpThrough(port: number, url: string, authorization: string, agent: HttpAgent | false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'GET', path: url, headers: { host: new URL(url).host, 'proxy-authorization': authorization }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), reusedSocket: req.reusedSocket, localPort: req.socket?.localPort }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('egress proxy: addresses no rule unlocks', () => {
  it('refuses locked address classes even to address rules naming them, and audits each as denied-range', async () => {
    const echo = await startEchoServer();
    cleanups.push(echo.close);
    const proxy = await startProxy({ lockedAddressClasses: PLATFORM_LOCAL_CLASSES });
    cleanups.push(proxy.close);
    const targets = [`127.0.0.1:${echo.port}`, `127.9.9.9:${echo.port}`, `[::1]:${echo.port}`, `[::ffff:127.0.0.1]:${echo.port}`, `[64:ff9b::7f00:1]:${echo.port}`, '169.254.169.254:80', '169.254.10.10:80', `0.0.0.0:${echo.port}`, '[fe80::1]:80'];
    proxy.proxy.register('127.0.0.1', {
      agentId: 'a1',
      tenantId: 't1',
      // Every target named by an address rule: without the lock each would be allowed.
      allowlist: ['127.0.0.0/8:1-65535', '[::1]:1-65535', '[64:ff9b::/96]:1-65535', '169.254.0.0/16:1-65535', '0.0.0.0/8:1-65535', '[fe80::/10]:1-65535'],
    });
    for (const target of targets) {
      const reply = await connectThrough(proxy.port, target);
      expect(reply.statusCode, target).toBe(403);
      expect(reply.body, target).toMatch(/addresses are the platform's own and no rule allows them through this proxy/);
    }
    const denied = proxy.sink.entries().filter(byReason('denied-range'));
    expect(denied.map((e) => e.httpStatus)).toEqual(targets.map(() => 403));
    expect(denied.every((e) => e.agentId === 'a1' && e.decision === 'deny')).toBe(true);
  });

  it('without the lock (the default) the same address rule reaches loopback: the lock is what refuses it', async () => {
    const echo = await startEchoServer();
    cleanups.push(echo.close);
    const proxy = await startProxy();
    cleanups.push(proxy.close);
    proxy.proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: ['127.0.0.0/8:1-65535'] });
    const reply = await connectThrough(proxy.port, `127.0.0.1:${echo.port}`);
    expect(reply.statusCode, reply.body).toBe(200);
    reply.socket.destroy();
  });

  it('refuses a name resolving to a locked class, but a trusted test hosts file still maps names to loopback', async () => {
    const origin = await startOriginServer();
    cleanups.push(async () => origin.close());
    const untrusted = await startProxy({ lockedAddressClasses: PLATFORM_LOCAL_CLASSES, hosts: '127.0.0.1 local.test\n' });
    cleanups.push(untrusted.close);
    untrusted.proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`local.test:${origin.port}`, `127.0.0.1:${origin.port}`] });
    const refused = await connectThrough(untrusted.port, `local.test:${origin.port}`);
    expect(refused.statusCode).toBe(403);
    expect(refused.body).toMatch(/resolves to 127\.0\.0\.1; loopback addresses are the platform's own/);

    const trusted = await startProxy({ lockedAddressClasses: PLATFORM_LOCAL_CLASSES, hosts: '127.0.0.1 local.test\n', trustHostsFile: true });
    cleanups.push(trusted.close);
    trusted.proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`local.test:${origin.port}`] });
    const allowed = await connectThrough(trusted.port, `local.test:${origin.port}`);
    expect(allowed.statusCode).toBe(200);
    allowed.socket.destroy();
  });

  it('reads platformAddresses on every check: an address added later is refused from the next connection on', async () => {
    const echo = await startEchoServer();
    cleanups.push(echo.close);
    let current: Cidr[] = [];
    const proxy = await startProxy({ platformAddresses: { current: () => current } });
    cleanups.push(proxy.close);
    proxy.proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const before = await connectThrough(proxy.port, `127.0.0.1:${echo.port}`);
    expect(before.statusCode).toBe(200);
    before.socket.destroy();
    current = [parseCidr('127.0.0.1')];
    const after = await connectThrough(proxy.port, `127.0.0.1:${echo.port}`);
    expect(after.statusCode).toBe(403);
    expect(after.body).toContain('address is reserved for the platform');
    expect(await proxy.sink.waitFor(byReason('denied-range'), waitSignal())).toMatchObject({ agentId: 'a1', httpStatus: 403 });
  });
});

describe('egress proxy: credential checks', () => {
  it('answers 503 auth-unavailable when the authenticator does not answer within authTimeoutMs, and aborts its signal', async () => {
    const auth = new CountingAuthenticator([]);
    auth.gate = new Promise(() => undefined); // never answers: a stalled store
    const proxy = await startProxy({ authTimeoutMs: 300 });
    cleanups.push(proxy.close);
    const { port } = await proxy.proxy.listen({ host: '127.0.0.1', port: 0, authenticate: auth });
    const started = Date.now();
    const reply = await connectWithCredentials(port, '127.0.0.1:9', basic('agent1', 'secret'));
    expect(reply.statusCode).toBe(503);
    expect(reply.text).toContain('proxy credentials could not be checked within 300 ms; retry');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(auth.signals[0]?.aborted).toBe(true);
    const record = await proxy.sink.waitFor(byReason('auth-unavailable'), waitSignal());
    expect(record).toMatchObject({ agentId: null, httpStatus: 503, decision: 'deny' });
    expect(JSON.stringify(record)).not.toContain('secret');
  });

  it('caps credential checks in flight per source address with 429, before calling the authenticator', async () => {
    const auth = new CountingAuthenticator([]);
    let open!: () => void;
    auth.gate = new Promise((resolve) => (open = resolve));
    const proxy = await startProxy({ maxAuthenticationsPerSource: 2 });
    cleanups.push(proxy.close);
    const { port } = await proxy.proxy.listen({ host: '127.0.0.1', port: 0, authenticate: auth });
    const waiting = [connectWithCredentials(port, '127.0.0.1:9', basic('agent1', 'nope')), connectWithCredentials(port, '127.0.0.1:9', basic('agent1', 'nope'))];
    const deadline = Date.now() + 5_000;
    while (auth.calls < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(auth.calls).toBe(2);
    const third = await connectWithCredentials(port, '127.0.0.1:9', basic('agent1', 'nope'));
    expect(third.statusCode).toBe(429);
    expect(third.text).toContain('2 proxy credential checks from 127.0.0.1 are in progress already; retry');
    expect(auth.calls).toBe(2);
    open();
    for (const reply of await Promise.all(waiting)) expect(reply.statusCode).toBe(407);
    // The slots are free again.
    const after = await connectWithCredentials(port, '127.0.0.1:9', basic('agent1', 'nope'));
    expect(after.statusCode).toBe(407);
    expect(auth.calls).toBe(3);
    expect(proxy.sink.entries().filter(byReason('too-many-connections'))).toHaveLength(1);
  });

  it('authenticates a keep-alive connection once; other credentials on it, or a new connection, are checked anew', async () => {
    const origin = await startOriginServer();
    cleanups.push(async () => origin.close());
    const auth = new CountingAuthenticator([`127.0.0.1:${origin.port}`]);
    const proxy = await startProxy();
    cleanups.push(proxy.close);
    const { port } = await proxy.proxy.listen({ host: '127.0.0.1', port: 0, authenticate: auth });
    const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => keepAlive.destroy());
    const url = `http://127.0.0.1:${origin.port}/ka`;

    const first = await httpThrough(port, url, basic('agent1', 'secret'), keepAlive);
    const second = await httpThrough(port, url, basic('agent1', 'secret'), keepAlive);
    const third = await httpThrough(port, url, basic('agent1', 'secret'), keepAlive);
    expect([first.statusCode, second.statusCode, third.statusCode]).toEqual([200, 200, 200]);
    expect([second.reusedSocket, third.reusedSocket]).toEqual([true, true]);
    expect(second.localPort).toBe(first.localPort);
    expect(auth.calls).toBe(1);
    // Each request is still audited on its own, under the agent.
    expect(proxy.sink.entries().filter((e) => e.reason === 'allowed' && e.agentId === 'agent1' && e.method === 'HTTP')).toHaveLength(3);

    // Other credentials on the same connection: checked (and refused) instead of riding on the first.
    const wrong = await httpThrough(port, url, basic('agent1', 'wrong'), keepAlive);
    expect(wrong.reusedSocket).toBe(true);
    expect(wrong.statusCode).toBe(407);
    expect(auth.calls).toBe(2);

    // A new connection is checked again.
    expect((await httpThrough(port, url, basic('agent1', 'secret'), false)).statusCode).toBe(200);
    expect(auth.calls).toBe(3);
  });

  it('checks a busy keep-alive connection again once credentialRecheckMs has passed: a narrowed allowlist then applies to it', async () => {
    const origin = await startOriginServer();
    cleanups.push(async () => origin.close());
    const other = await startOriginServer();
    cleanups.push(async () => other.close());
    const auth = new CountingAuthenticator([`127.0.0.1:${origin.port}`, `127.0.0.1:${other.port}`]);
    // The age of an identity is read from the proxy's clock: driven by hand, no sleeping.
    const clock = new ManualClock();
    const proxy = await startProxy({ clock });
    cleanups.push(proxy.close);
    const { port } = await proxy.proxy.listen({ host: '127.0.0.1', port: 0, authenticate: auth });
    const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => keepAlive.destroy());
    const creds = basic('agent1', 'secret');
    const otherUrl = `http://127.0.0.1:${other.port}/narrowed`;

    const first = await httpThrough(port, otherUrl, creds, keepAlive);
    expect(first.statusCode, first.body).toBe(200);
    expect(auth.calls).toBe(1);
    auth.rules = [`127.0.0.1:${origin.port}`]; // the PATCH narrowing the allowlist

    // Within the default 5 s the connection keeps the policy it was checked with.
    clock.advance(4_999);
    const young = await httpThrough(port, otherUrl, creds, keepAlive);
    expect([young.statusCode, young.reusedSocket, young.localPort]).toEqual([200, true, first.localPort]);
    expect(auth.calls).toBe(1);

    // Older than the bound: the same connection is checked again and gets the narrowed list.
    clock.advance(1);
    const old = await httpThrough(port, otherUrl, creds, keepAlive);
    expect([old.reusedSocket, old.localPort]).toEqual([true, first.localPort]);
    expect(old.statusCode, old.body).toBe(403);
    expect(old.body).toContain(`egress to 127.0.0.1:${other.port} denied: not in allowlist`);
    expect(auth.calls).toBe(2);
    expect(other.requests.map((r) => r.url)).toEqual(['/narrowed', '/narrowed']);
    expect(await proxy.sink.waitFor(byReason('not-in-allowlist'), waitSignal())).toMatchObject({ agentId: 'agent1', method: 'HTTP', httpStatus: 403 });
  });

  it('maps an authenticator\'s "unavailable" answer to 503 auth-unavailable, audited', async () => {
    const busy: ProxyAuthenticator = { authenticate: async () => ({ ok: false, reason: 'unavailable', detail: '3 proxy credential checks are reading the store already; retry' }) };
    const proxy = await startProxy();
    cleanups.push(proxy.close);
    const { port } = await proxy.proxy.listen({ host: '127.0.0.1', port: 0, authenticate: busy });
    const reply = await connectWithCredentials(port, '127.0.0.1:9', basic('agent1', 'secret'));
    expect(reply.statusCode).toBe(503);
    expect(reply.text).toContain('3 proxy credential checks are reading the store already; retry');
    expect(await proxy.sink.waitFor(byReason('auth-unavailable'), waitSignal())).toMatchObject({ agentId: null, httpStatus: 503, decision: 'deny' });
  });

  it('still checks every CONNECT tunnel', async () => {
    const echo = await startEchoServer();
    cleanups.push(echo.close);
    const auth = new CountingAuthenticator([`127.0.0.1:${echo.port}`]);
    const proxy = await startProxy();
    cleanups.push(proxy.close);
    const { port } = await proxy.proxy.listen({ host: '127.0.0.1', port: 0, authenticate: auth });
    for (let i = 0; i < 2; i += 1) {
      const tunnel = await connectWithCredentials(port, `127.0.0.1:${echo.port}`, basic('agent1', 'secret'));
      expect(tunnel.statusCode).toBe(200);
      tunnel.socket.destroy();
    }
    expect(auth.calls).toBe(2);
  });
});
