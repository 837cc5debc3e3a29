/**
 * What the first bytes of a connection say about TLS:
 * - `need-more`: a ClientHello has started but is not complete yet.
 * - `not-tls`: the bytes are not a TLS handshake record.
 * - `malformed`: a TLS handshake record that is not a valid ClientHello.
 * - `client-hello`: a complete ClientHello; `serverName` is the SNI host name, if any.
 */
export type ClientHelloScan =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'malformed'; readonly detail: string }
  | { readonly kind: 'client-hello'; readonly serverName?: string };

/** Largest ClientHello accepted; real ones are under 2 KiB, post-quantum key shares included. */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXTENSION_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;

class Malformed extends Error {}

/** A bounds-checked big-endian reader: reading past the end throws Malformed. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos = 0,
    private readonly end = buf.length,
  ) {}
  get remaining(): number {
    return this.end - this.pos;
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  sub(n: number): Reader {
    this.need(n);
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
  private need(n: number): void {
    if (this.pos + n > this.end) throw new Malformed('length field runs past its container');
  }
}

function parseClientHelloBody(body: Buffer): string | undefined {
  const r = new Reader(body);
  r.bytes(2 + 32); // legacy_version, random
  r.bytes(r.u8()); // legacy_session_id
  r.bytes(r.u16()); // cipher_suites
  r.bytes(r.u8()); // legacy_compression_methods
  if (r.remaining === 0) return undefined; // no extensions at all (very old clients)
  const extensions = r.sub(r.u16());
  let serverName: string | undefined;
  let seenSni = false;
  while (extensions.remaining > 0) {
    const type = extensions.u16();
    const data = extensions.sub(extensions.u16());
    if (type !== EXTENSION_SERVER_NAME) continue;
    if (seenSni) throw new Malformed('two server_name extensions');
    seenSni = true;
    const list = data.sub(data.u16());
    while (list.remaining > 0) {
      const nameType = list.u8();
      const name = list.bytes(list.u16());
      if (nameType !== NAME_TYPE_HOST) continue;
      if (serverName !== undefined) throw new Malformed('two host names in server_name');
      if (name.length === 0 || name.some((b) => b < 0x21 || b > 0x7e)) throw new Malformed('server_name is not a printable ASCII host name');
      serverName = name.toString('latin1');
    }
  }
  return serverName;
}

/**
 * Scans the first bytes a client sent for a TLS ClientHello and its SNI. Pure; never throws.
 * Handles a ClientHello split over several TLS records and over several reads (call again
 * with more bytes on `need-more`). Encrypted ClientHello (ECH) shows only the outer, public
 * server name, which is what this returns.
 */
export function scanClientHello(buf: Buffer): ClientHelloScan {
  if (buf.length === 0) return { kind: 'need-more' };
  if (buf[0] !== RECORD_HANDSHAKE) return { kind: 'not-tls' };
  // Reassemble the handshake message from the payloads of consecutive handshake records.
  const fragments: Buffer[] = [];
  let collected = 0;
  let pos = 0;
  let wanted: number | undefined;
  try {
    while (wanted === undefined || collected < wanted) {
      if (pos + 5 > buf.length) return { kind: 'need-more' };
      if (buf[pos] !== RECORD_HANDSHAKE) throw new Malformed('non-handshake record before the ClientHello ended');
      if (buf[pos + 1] !== 0x03) throw new Malformed('unknown record-layer version');
      const length = buf.readUInt16BE(pos + 3);
      if (length === 0 || length > 16384 + 2048) throw new Malformed('bad record length');
      if (pos + 5 + length > buf.length) {
        if (pos + 5 + length > MAX_CLIENT_HELLO_BYTES + 5 * 8) throw new Malformed('ClientHello too large');
        return { kind: 'need-more' };
      }
      fragments.push(buf.subarray(pos + 5, pos + 5 + length));
      collected += length;
      pos += 5 + length;
      if (wanted === undefined && collected >= 4) {
        const head = Buffer.concat(fragments);
        if (head[0] !== HANDSHAKE_CLIENT_HELLO) throw new Malformed('first handshake message is not a ClientHello');
        wanted = 4 + head.readUIntBE(1, 3);
        if (wanted > MAX_CLIENT_HELLO_BYTES) throw new Malformed('ClientHello too large');
      }
    }
    const message = Buffer.concat(fragments);
    const serverName = parseClientHelloBody(message.subarray(4, wanted));
    return serverName === undefined ? { kind: 'client-hello' } : { kind: 'client-hello', serverName };
  } catch (err) {
    if (err instanceof Malformed) return { kind: 'malformed', detail: err.message };
    throw err;
  }
}
