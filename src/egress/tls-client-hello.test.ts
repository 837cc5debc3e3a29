import fc from 'fast-check';
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { buildClientHello } from './testing/build-client-hello.js';
import { scanClientHello } from './tls-client-hello.js';

/** The first bytes a real Node TLS client sends for `servername`. */
async function captureRealClientHello(servername: string): Promise<Buffer> {
  let resolveBytes: (b: Buffer) => void = () => undefined;
  const bytes = new Promise<Buffer>((resolve) => (resolveBytes = resolve));
  const server = createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (scanClientHello(buf).kind !== 'need-more') {
        resolveBytes(buf);
        socket.destroy();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  const client = tlsConnect({ host: '127.0.0.1', port, servername });
  client.on('error', () => undefined);
  const result = await bytes;
  client.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return result;
}

describe('scanClientHello', () => {
  it('finds the SNI in a hand-built ClientHello, in one record or many', () => {
    expect(scanClientHello(buildClientHello('api.openai.com'))).toEqual({ kind: 'client-hello', serverName: 'api.openai.com' });
    expect(scanClientHello(buildClientHello('api.openai.com', { recordSize: 7 }))).toEqual({ kind: 'client-hello', serverName: 'api.openai.com' });
    expect(scanClientHello(buildClientHello(undefined))).toEqual({ kind: 'client-hello' });
  });

  it('asks for more bytes on every proper prefix', () => {
    const hello = buildClientHello('example.com', { recordSize: 30 });
    for (let i = 0; i < hello.length; i += 1) expect(scanClientHello(hello.subarray(0, i)).kind, `prefix ${i}`).toBe('need-more');
    expect(scanClientHello(hello).kind).toBe('client-hello');
  });

  it('tells non-TLS from broken TLS', () => {
    expect(scanClientHello(Buffer.from('GET / HTTP/1.1\r\n'))).toEqual({ kind: 'not-tls' });
    expect(scanClientHello(Buffer.from('SSH-2.0-OpenSSH\r\n'))).toEqual({ kind: 'not-tls' });
    const notHello = buildClientHello('a.example');
    notHello[5] = 0x02; // ServerHello instead of ClientHello
    expect(scanClientHello(notHello).kind).toBe('malformed');
    const interleaved = Buffer.concat([buildClientHello('a.example', { recordSize: 10 }).subarray(0, 15), Buffer.from([0x17, 0x03, 0x03, 0x00, 0x01, 0x00])]);
    expect(scanClientHello(interleaved).kind).toBe('malformed');
    const twoSni = buildClientHello('a.example', { extraExtensions: Buffer.from([0, 0, 0, 5, 0, 3, 0, 0, 0]) });
    expect(scanClientHello(twoSni)).toMatchObject({ kind: 'malformed', detail: 'two server_name extensions' });
    const binaryName = buildClientHello('a\u0000b');
    expect(scanClientHello(binaryName).kind).toBe('malformed');
  });

  it('reads the SNI a real TLS client sends', async () => {
    const real = await captureRealClientHello('real.example.org');
    expect(scanClientHello(real)).toEqual({ kind: 'client-hello', serverName: 'real.example.org' });
  });

  it('never throws on arbitrary bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, tlsPrefix) => {
        const buf = tlsPrefix ? Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), Buffer.from(bytes)]) : Buffer.from(bytes);
        expect(['need-more', 'not-tls', 'malformed', 'client-hello']).toContain(scanClientHello(buf).kind);
      }),
      { numRuns: 2000 },
    );
    const hello = buildClientHello('mutate.example');
    fc.assert(
      fc.property(fc.nat(hello.length - 1), fc.nat(255), (index, value) => {
        const copy = Buffer.from(hello);
        copy[index] = value;
        expect(() => scanClientHello(copy)).not.toThrow();
      }),
      { numRuns: 2000 },
    );
  });
});
