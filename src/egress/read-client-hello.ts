import type { Duplex } from 'node:stream';
import { MAX_CLIENT_HELLO_BYTES, scanClientHello, type ClientHelloScan } from './tls-client-hello.js';

/** What the client sent first on a TLS-checked tunnel: a scan result, or nothing in time. */
export type ClientHelloRead =
  | { readonly kind: 'scanned'; readonly buffer: Buffer; readonly scan: ClientHelloScan }
  | { readonly kind: 'timeout'; readonly buffer: Buffer }
  | { readonly kind: 'closed'; readonly buffer: Buffer };

/**
 * Reads from a freshly opened tunnel until the bytes (starting with `head`) hold a complete
 * ClientHello, something that is not TLS, or a broken ClientHello; gives up after
 * `timeoutMs` or when the client closes. Leaves the socket paused with no data listener, and
 * returns every byte read so the caller can forward them. Never rejects.
 */
export function readClientHello(socket: Duplex, head: Buffer, timeoutMs: number): Promise<ClientHelloRead> {
  let buffer = head;
  const first = scanClientHello(buffer);
  if (first.kind !== 'need-more') return Promise.resolve({ kind: 'scanned', buffer, scan: first });
  return new Promise((resolve) => {
    const done = (result: ClientHelloRead): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      const scan: ClientHelloScan =
        buffer.length > MAX_CLIENT_HELLO_BYTES + 1024 ? { kind: 'malformed', detail: 'ClientHello too large' } : scanClientHello(buffer);
      if (scan.kind !== 'need-more') done({ kind: 'scanned', buffer, scan });
    };
    const onEnd = (): void => done({ kind: 'closed', buffer });
    const timer = setTimeout(() => done({ kind: 'timeout', buffer }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

