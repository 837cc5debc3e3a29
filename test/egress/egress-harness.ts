import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressProxy, type EgressProxyOptions } from '../../src/egress/egress-proxy.js';
import { MemoryAuditSink } from '../../src/egress/memory-audit-sink.js';

/** Listens on 127.0.0.1:0 and returns the port. */
export async function listenLocal(server: Server | HttpServer, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export function closeServer(server: Server | HttpServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A TCP echo server that tracks its sockets so close() is prompt. */
export async function startEchoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  const port = await listenLocal(server);
  return {
    port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}

/** An HTTP origin that answers with what it received (method, url, headers, body). */
export async function startOriginServer(): Promise<{ port: number; requests: IncomingMessage[]; close: () => Promise<void> }> {
  const requests: IncomingMessage[] = [];
  const server = createHttpServer((req, res) => {
    requests.push(req);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json', 'x-origin': 'yes' });
      res.end(body);
    });
  });
  const port = await listenLocal(server);
  return { port, requests, close: () => closeServer(server) };
}

export interface ProxyReply {
  statusCode: number;
  /** The response head text (status line and headers). */
  head: string;
  /** For non-200 replies: the body, read until the proxy closed the connection. */
  body: string;
  /** For 200 replies: the open tunnel socket, with any bytes after the head unshifted. */
  socket: Socket;
}

/** Reads one HTTP response head from `socket`; resolves with the head and any extra bytes. */
function readHead(socket: Socket, signal: AbortSignal): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      cleanup();
      resolve({ head: buffer.subarray(0, end).toString('latin1'), rest: buffer.subarray(end + 4) });
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`connection closed before a response head; got ${JSON.stringify(buffer.toString('latin1'))}`));
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason);
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      signal.removeEventListener('abort', onAbort);
      socket.pause();
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function readToEnd(socket: Socket, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.once('error', () => undefined);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    socket.resume();
  });
}

/** Opens a TCP connection to the proxy, optionally from a chosen loopback address. */
export function openClient(proxyPort: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: proxyPort, localAddress });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends `CONNECT target` from `localAddress` and returns the reply (and the tunnel on 200). */
export async function connectThrough(
  proxyPort: number,
  target: string,
  options: { localAddress?: string; signal?: AbortSignal } = {},
): Promise<ProxyReply> {
  const signal = options.signal ?? AbortSignal.timeout(10_000);
  const socket = await openClient(proxyPort, options.localAddress);
  socket.on('error', () => undefined);
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const { head, rest } = await readHead(socket, signal);
  const statusCode = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  if (statusCode === 200) {
    if (rest.length > 0) socket.unshift(rest);
    return { statusCode, head, body: '', socket };
  }
  const body = Buffer.concat([rest, await readToEnd(socket, signal)]).toString('utf8');
  return { statusCode, head, body, socket };
}

/** Sends raw bytes to the proxy and returns everything it answers until it closes. */
export async function rawExchange(proxyPort: number, bytes: Buffer | string, signal = AbortSignal.timeout(10_000)): Promise<string> {
  const socket = await openClient(proxyPort);
  socket.on('error', () => undefined);
  const done = readToEnd(socket, signal);
  socket.end(bytes);
  return (await done).toString('latin1');
}

/** Writes `data` into a tunnel and reads until `expectedBytes` came back. */
export function echoRoundTrip(socket: Socket, data: Buffer, signal = AbortSignal.timeout(10_000)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= data.length) {
        socket.off('data', onData);
        resolve(received);
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`tunnel closed after ${received.length} of ${data.length} bytes`)));
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    socket.resume();
    socket.write(data);
  });
}

/** A proxy on 127.0.0.1:0 with a memory sink, plus a temp dir for a hosts file. */
export async function startProxy(
  options: Partial<EgressProxyOptions> & { hosts?: string } = {},
): Promise<{ proxy: EgressProxy; port: number; sink: MemoryAuditSink; close: () => Promise<void> }> {
  const sink = new MemoryAuditSink(1000);
  const dir = await mkdtemp(join(tmpdir(), 'egress-test-'));
  let hostsFile = options.hostsFile;
  if (options.hosts !== undefined) {
    hostsFile = join(dir, 'hosts');
    await writeFile(hostsFile, options.hosts);
  }
  const proxy = new EgressProxy({ auditSink: sink, ...options, hostsFile });
  const { port } = await proxy.listen({ host: '127.0.0.1', port: 0 });
  return {
    proxy,
    port,
    sink,
    close: async () => {
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export const waitSignal = (): AbortSignal => AbortSignal.timeout(5_000);
