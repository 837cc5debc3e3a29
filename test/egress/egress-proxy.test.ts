import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { staticResolver } from '../../src/egress/host-resolver.js';
import type { EgressAuditRecord } from '../../src/egress/egress-audit.js';
import {
  closeServer,
  connectThrough,
  echoRoundTrip,
  listenLocal,
  rawExchange,
  readToEnd,
  startEchoServer,
  startOriginServer,
  startProxy,
  waitSignal,
} from './egress-harness.js';
import { createServer } from 'node:net';
import { buildClientHello } from '../../src/egress/testing/build-client-hello.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function setup(options: Parameters<typeof startProxy>[0] = {}) {
  const echo = await startEchoServer();
  cleanups.push(echo.close);
  const proxy = await startProxy(options);
  cleanups.push(proxy.close);
  return { echo, ...proxy };
}

/** A port with nothing listening on it (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  const port = await listenLocal(server);
  await closeServer(server);
  return port;
}

type HttpReply = { statusCode: number; headers: Record<string, unknown>; body: string };

function httpViaProxy(proxyPort: number, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpReply> {
  // Like curl and other proxy clients, send the target's authority as Host (Node would send the proxy's).
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(url)?.[1];
  const headers = { ...(authority === undefined ? {} : { host: authority }), ...init.headers };
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxyPort, method: init.method ?? 'GET', path: url, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

const byReason = (reason: EgressAuditRecord['reason']) => (e: EgressAuditRecord) => e.reason === reason;

describe('egress proxy: CONNECT tunnels', () => {
  it('tunnels to an allowed address rule end to end and counts bytes both ways', async () => {
    const { echo, proxy, port, sink } = await setup();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const reply = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(reply.statusCode).toBe(200);
    const data = Buffer.alloc(100_000, 7);
    const echoed = await echoRoundTrip(reply.socket, data);
    expect(echoed.equals(data)).toBe(true);
    expect(proxy.openConnections('127.0.0.1')).toBe(1);
    reply.socket.end();
    const entry = await sink.waitFor(byReason('allowed'), waitSignal());
    expect(entry).toMatchObject({
      agentId: 'a1',
      tenantId: 't1',
      sourceIp: '127.0.0.1',
      method: 'CONNECT',
      host: '127.0.0.1',
      port: echo.port,
      resolvedIp: '127.0.0.1',
      decision: 'allow',
      rule: `127.0.0.1:${echo.port}`,
      bytesUp: 100_000,
      bytesDown: 100_000,
      httpStatus: 200,
    });
    expect(entry.durationMs).toBeGreaterThanOrEqual(0);
    await expect.poll(() => proxy.openConnections()).toBe(0);
  });

  it('denies a destination that is not in the allowlist with 403 and an immediate record', async () => {
    const { echo, proxy, port, sink } = await setup();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const reply = await connectThrough(port, 'evil.com:443');
    expect(reply.statusCode).toBe(403);
    expect(reply.body.trim()).toBe('egress to evil.com:443 denied: not in allowlist');
    const entries = sink.entries();
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ decision: 'deny', reason: 'not-in-allowlist', host: 'evil.com', port: 443, agentId: 'a1', httpStatus: 403, bytesUp: 0 });
    // Same host, port not allowed.
    const wrongPort = await connectThrough(port, `127.0.0.1:${echo.port === 65535 ? 1 : echo.port + 1}`);
    expect(wrongPort.statusCode).toBe(403);
  });

  it('matches wildcard rules on subdomains at any depth but not on the apex', async () => {
    const { echo, proxy, port, sink } = await setup({
      hosts: '127.0.0.1 a.wild.test deep.a.wild.test wild.test\n',
      trustHostsFile: true,
    });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`*.wild.test:${echo.port}`] });
    for (const host of ['a.wild.test', 'deep.a.wild.test', 'A.Wild.Test.']) {
      const reply = await connectThrough(port, `${host}:${echo.port}`);
      expect(reply.statusCode, host).toBe(200);
      expect((await echoRoundTrip(reply.socket, Buffer.from('hi'))).toString()).toBe('hi');
      reply.socket.destroy();
    }
    const apex = await connectThrough(port, `wild.test:${echo.port}`);
    expect(apex.statusCode).toBe(403);
    expect(apex.body).toContain('not in allowlist');
    await expect.poll(() => sink.entries().filter((e) => e.decision === 'allow').length).toBe(3);
    expect(sink.entries().find((e) => e.host === 'a.wild.test')?.rule).toBe(`*.wild.test:${echo.port}`);
  });

  it('matches CIDR rules and port ranges', async () => {
    const { echo, proxy, port } = await setup();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.0/8:${echo.port - 1}-${echo.port + 1}`] });
    const inside = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(inside.statusCode).toBe(200);
    inside.socket.destroy();
    const outsideRange = await connectThrough(port, `127.0.0.1:${echo.port + 2}`);
    expect(outsideRange.statusCode).toBe(403);
    const outsideBlock = await connectThrough(port, `10.0.0.1:${echo.port}`);
    expect(outsideBlock.statusCode).toBe(403);
    expect(outsideBlock.body).toContain('not in allowlist');
  });

  it('denies the metadata address even when a host-name rule resolves to it', async () => {
    const { proxy, port, sink } = await setup({ resolver: staticResolver({ 'metadata.test': ['169.254.169.254'] }) });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: ['metadata.test:80'] });
    const reply = await connectThrough(port, 'metadata.test:80');
    expect(reply.statusCode).toBe(403);
    expect(reply.body).toContain('169.254.169.254 (metadata)');
    const http = await httpViaProxy(port, 'http://metadata.test/latest/meta-data/');
    expect(http.statusCode).toBe(403);
    const denies = sink.entries();
    expect(denies.map((e) => [e.method, e.reason, e.resolvedIp])).toEqual([
      ['CONNECT', 'private-address', '169.254.169.254'],
      ['HTTP', 'private-address', '169.254.169.254'],
    ]);
  });

  it('denies DNS rebinding: a host-name rule never unlocks a private address', async () => {
    const { proxy, port, sink } = await setup({
      resolver: staticResolver({ 'rebind.test': ['93.184.216.34', '10.0.0.1'], 'v6.test': ['fd00::1'], 'mapped.test': ['::ffff:127.0.0.1'] }),
    });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: ['rebind.test:443', 'v6.test:443', 'mapped.test:443'] });
    for (const [host, ip] of [
      ['rebind.test', '10.0.0.1'],
      ['v6.test', 'fd00::1'],
      ['mapped.test', '127.0.0.1'],
    ] as const) {
      const reply = await connectThrough(port, `${host}:443`);
      expect(reply.statusCode, host).toBe(403);
      expect(sink.entries().at(-1)).toMatchObject({ host, reason: 'private-address', resolvedIp: ip });
    }
  });

  it('lets an address rule unlock a private address a host name resolves to', async () => {
    const { echo, proxy, port } = await setup({ hosts: '127.0.0.1 db.internal\n' });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`db.internal:${echo.port}`] });
    // Without trustHostsFile, a hosts-file answer is vetted like DNS: loopback is refused...
    expect((await connectThrough(port, `db.internal:${echo.port}`)).statusCode).toBe(403);
    // ...until an address rule names it.
    proxy.update('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`db.internal:${echo.port}`, `127.0.0.1:${echo.port}`] });
    const reply = await connectThrough(port, `db.internal:${echo.port}`);
    expect(reply.statusCode).toBe(200);
    reply.socket.destroy();
  });

  it('never lets a rule unlock deniedRanges (the platform\'s own addresses)', async () => {
    const echo = await startEchoServer();
    cleanups.push(echo.close);
    const { proxy, port, sink, close } = await startProxy({ deniedRanges: ['127.0.0.0/8'], hosts: '127.0.0.1 allowed.test\n', trustHostsFile: true });
    cleanups.push(close);
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`, `allowed.test:${echo.port}`] });
    expect((await connectThrough(port, `127.0.0.1:${echo.port}`)).statusCode).toBe(403);
    expect((await connectThrough(port, `allowed.test:${echo.port}`)).statusCode).toBe(403);
    expect(sink.entries().map((e) => e.reason)).toEqual(['denied-range', 'denied-range']);
  });

  it('reports unresolvable names as 502 dns-failure and refused connections as 502 upstream-error', async () => {
    const { proxy, port, sink } = await setup({ resolver: staticResolver({}) });
    const dead = await closedPort();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: ['nowhere.test:443', `127.0.0.1:${dead}`] });
    const dns = await connectThrough(port, 'nowhere.test:443');
    expect(dns.statusCode).toBe(502);
    expect(dns.body).toContain('did not resolve');
    const refused = await connectThrough(port, `127.0.0.1:${dead}`);
    expect(refused.statusCode).toBe(502);
    expect(refused.body).toContain('ECONNREFUSED');
    expect(sink.entries().map((e) => e.reason)).toEqual(['dns-failure', 'upstream-error']);
  });
});

describe('egress proxy: slow DNS', () => {
  /** A resolver that never answers, until its signal aborts. */
  const hangingResolver = {
    resolve: (_host: string, signal: AbortSignal) =>
      new Promise<readonly string[]>((_, reject) => signal.addEventListener('abort', () => reject(new Error('resolver aborted')), { once: true })),
  };

  it('answers 502 dns-failure when resolution exceeds dnsTimeoutMs', async () => {
    const { proxy, port, sink } = await setup({ resolver: hangingResolver, dnsTimeoutMs: 100 });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: ['slow.test:443'] });
    const started = Date.now();
    const reply = await connectThrough(port, 'slow.test:443');
    expect(reply.statusCode).toBe(502);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(sink.entries()[0]).toMatchObject({ reason: 'dns-failure', decision: 'deny' });
  });

  it('records an attempt the client abandons while the proxy resolves, and frees its slot', async () => {
    const { proxy, port, sink } = await setup({ resolver: hangingResolver, dnsTimeoutMs: 60_000 });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: ['slow.test:443'] });
    const pending = connectThrough(port, 'slow.test:443').catch((err: unknown) => err);
    await expect.poll(() => proxy.openConnections('127.0.0.1')).toBe(1);
    proxy.unregister('127.0.0.1');
    await pending;
    const entry = await sink.waitFor(() => true, waitSignal());
    expect(entry).toMatchObject({ decision: 'allow', reason: 'allowed', host: 'slow.test', bytesUp: 0, detail: 'unregistered', rule: 'slow.test:443' });
    expect(proxy.openConnections()).toBe(0);
  });
});

describe('egress proxy: TLS ClientHello check', () => {
  async function tlsSetup() {
    const ctx = await setup({ hosts: '127.0.0.1 allowed.test\n', trustHostsFile: true, tlsCheckedPorts: 'all', clientHelloTimeoutMs: 500 });
    ctx.proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`allowed.test:${ctx.echo.port}`, `127.0.0.1:${ctx.echo.port}`] });
    return ctx;
  }

  it('forwards a ClientHello whose SNI matches the CONNECT host', async () => {
    const { echo, port, sink } = await tlsSetup();
    const reply = await connectThrough(port, `allowed.test:${echo.port}`);
    expect(reply.statusCode).toBe(200);
    const hello = buildClientHello('Allowed.Test');
    // The echo server sends the ClientHello back: it went through untouched.
    expect((await echoRoundTrip(reply.socket, hello)).equals(hello)).toBe(true);
    reply.socket.end();
    const entry = await sink.waitFor(byReason('allowed'), waitSignal());
    expect(entry).toMatchObject({ sni: 'allowed.test', bytesUp: hello.length, bytesDown: hello.length });
  });

  it('closes the tunnel without forwarding when the SNI names another host', async () => {
    const { echo, port, sink } = await tlsSetup();
    const reply = await connectThrough(port, `allowed.test:${echo.port}`);
    expect(reply.statusCode).toBe(200);
    const closed = readToEnd(reply.socket, waitSignal());
    reply.socket.write(buildClientHello('evil.com'));
    expect((await closed).length).toBe(0);
    const entry = await sink.waitFor(byReason('sni-mismatch'), waitSignal());
    expect(entry).toMatchObject({ decision: 'deny', sni: 'evil.com', host: 'allowed.test', bytesUp: 0 });
    expect(entry.detail).toContain('"evil.com" does not match');
  });

  it('handles a ClientHello that arrives one byte at a time and rejects a malformed one', async () => {
    const { echo, port, sink } = await tlsSetup();
    const reply = await connectThrough(port, `allowed.test:${echo.port}`);
    const hello = buildClientHello('allowed.test', { recordSize: 20 });
    const received: Buffer[] = [];
    reply.socket.on('data', (c: Buffer) => received.push(c));
    reply.socket.resume();
    for (const byte of hello) {
      reply.socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    await expect.poll(() => Buffer.concat(received).length).toBe(hello.length);
    expect(Buffer.concat(received).equals(hello)).toBe(true);
    reply.socket.destroy();

    const bad = await connectThrough(port, `allowed.test:${echo.port}`);
    const closed = readToEnd(bad.socket, waitSignal());
    const broken = Buffer.from(hello);
    broken.writeUInt16BE(0xffff, 9 + 2 + 32 + 1 + 32 + 0); // cipher_suites length runs past the end
    bad.socket.write(broken);
    await closed;
    await sink.waitFor(byReason('tls-malformed'), waitSignal());
  });

  it('times out a client that never sends a ClientHello on a checked port', async () => {
    const { echo, port, sink } = await tlsSetup();
    const reply = await connectThrough(port, `allowed.test:${echo.port}`);
    await readToEnd(reply.socket, waitSignal());
    expect((await sink.waitFor(byReason('client-hello-timeout'), waitSignal())).decision).toBe('deny');
  });

  it('denies any SNI on a tunnel to an IP literal, and forwards non-TLS bytes unchanged', async () => {
    const { echo, port, sink } = await tlsSetup();
    const ip = await connectThrough(port, `127.0.0.1:${echo.port}`);
    ip.socket.write(buildClientHello('allowed.test'));
    await readToEnd(ip.socket, waitSignal());
    expect((await sink.waitFor(byReason('sni-mismatch'), waitSignal())).host).toBe('127.0.0.1');
    const plain = await connectThrough(port, `allowed.test:${echo.port}`);
    expect((await echoRoundTrip(plain.socket, Buffer.from('SSH-2.0-test\r\n'))).toString()).toBe('SSH-2.0-test\r\n');
    plain.socket.destroy();
  });
});

describe('egress proxy: plain HTTP', () => {
  it('forwards an allowed absolute-form GET and POST, strips hop-by-hop headers and audits bytes', async () => {
    const origin = await startOriginServer();
    cleanups.push(origin.close);
    const { proxy, port, sink } = await setup({ hosts: '127.0.0.1 allowed.test\n', trustHostsFile: true });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`allowed.test:${origin.port}`] });
    const get = await httpViaProxy(port, `http://allowed.test:${origin.port}/path?q=1#frag`, {
      headers: { 'proxy-connection': 'keep-alive', 'proxy-authorization': 'Basic eDp5', 'x-keep': 'me' },
    });
    expect(get.statusCode).toBe(200);
    expect(get.headers['x-origin']).toBe('yes');
    const seen = JSON.parse(get.body) as { method: string; url: string; headers: Record<string, string> };
    expect(seen.method).toBe('GET');
    expect(seen.url).toBe('/path?q=1');
    expect(seen.headers.host).toBe(`allowed.test:${origin.port}`);
    expect(seen.headers['x-keep']).toBe('me');
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    expect(seen.headers['proxy-connection']).toBeUndefined();
    const entry = await sink.waitFor(byReason('allowed'), waitSignal());
    expect(entry).toMatchObject({ method: 'HTTP', host: 'allowed.test', port: origin.port, httpStatus: 200, resolvedIp: '127.0.0.1' });
    expect(entry.bytesDown).toBeGreaterThan(Buffer.byteLength(get.body));
    expect(entry.bytesUp).toBeGreaterThan(0);

    const post = await httpViaProxy(port, `http://allowed.test:${origin.port}/upload`, { method: 'POST', body: 'x'.repeat(50_000), headers: { 'content-type': 'text/plain' } });
    expect((JSON.parse(post.body) as { body: string }).body).toHaveLength(50_000);
    await expect.poll(() => sink.entries().filter((e) => e.reason === 'allowed').length).toBe(2);
    expect(sink.entries().at(-1)?.bytesUp).toBeGreaterThan(50_000);
  });

  it('answers 403 for denied hosts, Host header mismatch, and 400 for non-proxy requests', async () => {
    const origin = await startOriginServer();
    cleanups.push(origin.close);
    const { proxy, port, sink } = await setup({ hosts: '127.0.0.1 allowed.test\n', trustHostsFile: true });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`allowed.test:${origin.port}`] });
    const denied = await httpViaProxy(port, 'http://evil.test/');
    expect(denied.statusCode).toBe(403);
    expect(denied.body.trim()).toBe('egress to evil.test:80 denied: not in allowlist');
    const mismatch = await httpViaProxy(port, `http://allowed.test:${origin.port}/`, { headers: { host: 'evil.test' } });
    expect(mismatch.statusCode).toBe(403);
    expect(mismatch.body).toContain('Host header');
    const originForm = await httpViaProxy(port, '/just-a-path');
    expect(originForm.statusCode).toBe(400);
    const https = await httpViaProxy(port, 'https://allowed.test/');
    expect(https.statusCode).toBe(400);
    expect(https.body).toContain('CONNECT');
    expect(sink.entries().map((e) => e.reason)).toEqual(['not-in-allowlist', 'host-mismatch', 'unsupported-request', 'unsupported-request']);
    expect(origin.requests).toHaveLength(0);
  });
});

describe('egress proxy: misbehaving upstreams', () => {
  it('answers 502 when the origin sends a head Node will not forward, and keeps serving', async () => {
    const weird = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.end('HTTP/1.1 099 Weird\r\nContent-Length: 0\r\n\r\n'));
    });
    const weirdPort = await listenLocal(weird);
    cleanups.push(() => closeServer(weird));
    const origin = await startOriginServer();
    cleanups.push(origin.close);
    const { proxy, port, sink } = await setup();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${weirdPort}`, `127.0.0.1:${origin.port}`] });
    const bad = await httpViaProxy(port, `http://127.0.0.1:${weirdPort}/`);
    expect(bad.statusCode).toBe(502);
    expect((await sink.waitFor((e) => e.port === weirdPort, waitSignal())).reason).toBe('upstream-error');
    expect((await httpViaProxy(port, `http://127.0.0.1:${origin.port}/`)).statusCode).toBe(200);
  });
});

describe('egress proxy: registry', () => {
  it('denies unknown source IPs and tells agents apart by source address', async () => {
    const { echo, proxy, port, sink } = await setup();
    proxy.register('127.0.0.2', { agentId: 'a2', tenantId: 't2', allowlist: [`127.0.0.1:${echo.port}`] });
    const stranger = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(stranger.statusCode).toBe(403);
    expect(stranger.body).toContain('source 127.0.0.1 is not a registered agent');
    expect(sink.entries()[0]).toMatchObject({ reason: 'unknown-source', agentId: null, sourceIp: '127.0.0.1' });

    const known = await connectThrough(port, `127.0.0.1:${echo.port}`, { localAddress: '127.0.0.2' });
    expect(known.statusCode).toBe(200);
    expect((await echoRoundTrip(known.socket, Buffer.from('ping'))).toString()).toBe('ping');
    // Unregistering closes the agent's open tunnels: its address may go to another agent.
    const closed = readToEnd(known.socket, waitSignal());
    expect(proxy.unregister('127.0.0.2')).toBe(1);
    await closed;
    const entry = await sink.waitFor((e) => e.agentId === 'a2' && e.decision === 'allow', waitSignal());
    expect(entry.detail).toBe('unregistered');
    expect((await connectThrough(port, `127.0.0.1:${echo.port}`, { localAddress: '127.0.0.2' })).statusCode).toBe(403);
  });

  it('applies update() to new connections only; an open tunnel keeps working', async () => {
    const { echo, proxy, port } = await setup();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const open = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(open.statusCode).toBe(200);
    proxy.update('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [] });
    expect((await echoRoundTrip(open.socket, Buffer.from('still here'))).toString()).toBe('still here');
    expect((await connectThrough(port, `127.0.0.1:${echo.port}`)).statusCode).toBe(403);
    // closeExisting cuts the open tunnel too.
    const closed = readToEnd(open.socket, waitSignal());
    proxy.update('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [] }, { closeExisting: true });
    await closed;
  });

  it('validates registrations', async () => {
    const { proxy } = await setup();
    expect(() => proxy.register('not-an-ip', { agentId: 'a', tenantId: 't', allowlist: [] })).toThrow(/not an IP address/);
    expect(() => proxy.register('10.0.0.2', { agentId: 'a', tenantId: 't', allowlist: ['*.com'] })).toThrow(/too broad/);
    proxy.register('::ffff:10.0.0.2', { agentId: 'a', tenantId: 't', allowlist: ['pypi.org'] });
    expect(proxy.policyOf('10.0.0.2')?.agentId).toBe('a');
    expect(() => proxy.register('10.0.0.2', { agentId: 'b', tenantId: 't', allowlist: [] })).toThrow(/already registered/);
    expect(() => proxy.update('10.0.0.3', { agentId: 'b', tenantId: 't', allowlist: [] })).toThrow(/not registered/);
  });

  it('limits open connections per source with 429', async () => {
    const { echo, proxy, port, sink } = await setup({ maxConnectionsPerSource: 1 });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const first = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(first.statusCode).toBe(200);
    const second = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(second.statusCode).toBe(429);
    expect(sink.entries().at(-1)?.reason).toBe('too-many-connections');
    first.socket.destroy();
    await expect.poll(() => proxy.openConnections()).toBe(0);
    const third = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(third.statusCode).toBe(200);
    third.socket.destroy();
  });
});

describe('egress proxy: robustness and lifecycle', () => {
  it('answers 400 to malformed requests, 431 to huge heads, and survives random bytes', async () => {
    const { echo, proxy, port, sink } = await setup({ maxHeaderBytes: 4096 });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    expect(await rawExchange(port, 'NOT HTTP AT ALL\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(port, 'CONNECT no-port HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 [\s\S]*a port is required/);
    expect(await rawExchange(port, 'CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(port, 'CONNECT 2130706433:443 HTTP/1.1\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 [\s\S]*numeric/);
    expect(await rawExchange(port, `GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 60; i += 1) {
      const bytes = Buffer.alloc(1 + (random() % 600), 0).map(() => random() & 0xff);
      const prefix = i % 3 === 0 ? 'CONNECT ' : i % 3 === 1 ? 'GET http://' : '';
      await rawExchange(port, Buffer.concat([Buffer.from(prefix), bytes, Buffer.from('\r\n\r\n')]));
    }
    const ok = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(ok.statusCode).toBe(200);
    ok.socket.destroy();
    expect(sink.entries().some((e) => e.reason === 'malformed-request')).toBe(true);
  });

  it('closes idle tunnels after idleTimeoutMs', async () => {
    const { echo, proxy, port, sink } = await setup({ idleTimeoutMs: 300 });
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const reply = await connectThrough(port, `127.0.0.1:${echo.port}`);
    await echoRoundTrip(reply.socket, Buffer.from('x'));
    await readToEnd(reply.socket, waitSignal());
    expect((await sink.waitFor(byReason('allowed'), waitSignal())).detail).toBe('idle-timeout');
  });

  it('close() ends open tunnels, refuses new connections and is idempotent', async () => {
    const echo = await startEchoServer();
    cleanups.push(echo.close);
    const { proxy, port, sink } = await startProxy();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const reply = await connectThrough(port, `127.0.0.1:${echo.port}`);
    const closed = readToEnd(reply.socket, waitSignal());
    await proxy.close(AbortSignal.timeout(5_000));
    await closed;
    await proxy.close();
    expect((await sink.waitFor(byReason('allowed'), waitSignal())).detail).toBe('proxy-closed');
    await expect(connectThrough(port, `127.0.0.1:${echo.port}`)).rejects.toThrow();
    await expect(proxy.listen({ host: '127.0.0.1', port: 0 })).rejects.toThrow(/closed/);
  });

  it('listens on several addresses and unlisten() stops one of them', async () => {
    const { echo, proxy, port } = await setup();
    proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`127.0.0.1:${echo.port}`] });
    const second = await proxy.listen({ host: '127.0.0.1', port: 0 });
    expect(proxy.addresses()).toHaveLength(2);
    const viaSecond = await connectThrough(second.port, `127.0.0.1:${echo.port}`);
    expect(viaSecond.statusCode).toBe(200);
    const closed = readToEnd(viaSecond.socket, waitSignal());
    await proxy.unlisten(second);
    await closed;
    await expect(connectThrough(second.port, `127.0.0.1:${echo.port}`)).rejects.toThrow();
    const viaFirst = await connectThrough(port, `127.0.0.1:${echo.port}`);
    expect(viaFirst.statusCode).toBe(200);
    viaFirst.socket.destroy();
  });
});
