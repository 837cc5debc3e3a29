import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, connectThrough, listenLocal, startProxy, waitSignal } from './egress-harness.js';

const run = promisify(execFile);

/** Real TLS clients (Node's tls, curl) through the proxy, with a certificate made by openssl. */
describe('egress proxy with real TLS clients', () => {
  let dir: string;
  let cert: Buffer;
  let httpsPort: number;
  let server: ReturnType<typeof createHttpsServer>;
  let ctx: Awaited<ReturnType<typeof startProxy>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-tls-'));
    try {
      await run('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=allowed.test',
        '-addext', 'subjectAltName=DNS:allowed.test,DNS:evil.test',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      ]);
    } catch (err) {
      throw new Error(`these tests need the openssl CLI to make a test certificate (apt-get install openssl): ${String(err)}`);
    }
    cert = await readFile(join(dir, 'cert.pem'));
    server = createHttpsServer({ key: await readFile(join(dir, 'key.pem')), cert }, (req, res) => {
      res.end(`hello ${req.headers.host ?? ''} ${req.url ?? ''}`);
    });
    httpsPort = await listenLocal(server);
    ctx = await startProxy({ hosts: '127.0.0.1 allowed.test evil.test\n', trustHostsFile: true, tlsCheckedPorts: [httpsPort] });
    ctx.proxy.register('127.0.0.1', { agentId: 'a1', tenantId: 't1', allowlist: [`allowed.test:${httpsPort}`] });
  });

  afterAll(async () => {
    await ctx?.close();
    if (server !== undefined) await closeServer(server);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  function tlsOver(socket: Socket, servername: string): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const tls = tlsConnect({ socket, servername, ca: cert });
      tls.once('secureConnect', () => resolve(tls));
      tls.once('error', reject);
    });
  }

  it('carries an HTTPS request through a CONNECT tunnel with a matching SNI', async () => {
    const reply = await connectThrough(ctx.port, `allowed.test:${httpsPort}`);
    expect(reply.statusCode).toBe(200);
    const tls = await tlsOver(reply.socket, 'allowed.test');
    const body = await new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      tls.on('data', (c: Buffer) => chunks.push(c));
      tls.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
      tls.end(`GET /secret HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n`);
    });
    expect(body).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*hello allowed.test \/secret$/);
    const entry = await ctx.sink.waitFor((e) => e.decision === 'allow' && e.sni === 'allowed.test', waitSignal());
    expect(entry.bytesUp).toBeGreaterThan(200);
    expect(entry.bytesDown).toBeGreaterThan(500); // includes the certificate
  });

  it('cuts a tunnel whose TLS SNI names another host (domain fronting)', async () => {
    const reply = await connectThrough(ctx.port, `allowed.test:${httpsPort}`);
    expect(reply.statusCode).toBe(200);
    await expect(tlsOver(reply.socket, 'evil.test')).rejects.toThrow();
    const entry = await ctx.sink.waitFor((e) => e.reason === 'sni-mismatch', waitSignal());
    expect(entry).toMatchObject({ decision: 'deny', sni: 'evil.test', host: 'allowed.test', bytesUp: 0 });
  });

  it('works with curl -x as a standard HTTPS proxy, and curl sees the 403 for a denied host', async () => {
    const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-x', `http://127.0.0.1:${ctx.port}`, '--cacert', join(dir, 'cert.pem'), `https://allowed.test:${httpsPort}/via-curl`]);
    expect(stdout).toBe('hello allowed.test:' + httpsPort + ' /via-curl');
    const denied = await run('curl', ['-sS', '--max-time', '10', '-x', `http://127.0.0.1:${ctx.port}`, '--cacert', join(dir, 'cert.pem'), `https://evil.test:${httpsPort}/`]).catch((err: { stderr: string; code: number }) => err);
    expect('code' in denied && denied.code).toBe(56);
    expect(denied.stderr).toMatch(/403/);
  });
});
