/**
 * Builds a minimal but well-formed TLS 1.2/1.3 ClientHello record by hand, for tests of the
 * SNI check. `serverName` undefined leaves out the server_name extension; `recordSize` splits
 * the handshake message over several records of at most that many bytes.
 */
export function buildClientHello(serverName?: string, options: { recordSize?: number; extraExtensions?: Buffer } = {}): Buffer {
  const u16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
  const u24 = (n: number): Buffer => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
  const extensions: Buffer[] = [];
  if (serverName !== undefined) {
    const name = Buffer.from(serverName, 'latin1');
    const entry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
    const list = Buffer.concat([u16(entry.length), entry]);
    extensions.push(Buffer.concat([u16(0x0000), u16(list.length), list]));
  }
  // supported_versions (TLS 1.3, 1.2), so the hello looks like what real clients send.
  const versions = Buffer.from([4, 0x03, 0x04, 0x03, 0x03]);
  extensions.push(Buffer.concat([u16(0x002b), u16(versions.length), versions]));
  if (options.extraExtensions !== undefined) extensions.push(options.extraExtensions);
  const extensionBytes = Buffer.concat(extensions);
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]), // legacy_version
    Buffer.alloc(32, 0x11), // random
    Buffer.from([32]),
    Buffer.alloc(32, 0x22), // legacy_session_id
    u16(4),
    Buffer.from([0x13, 0x01, 0x13, 0x02]), // cipher suites
    Buffer.from([1, 0]), // compression: null
    u16(extensionBytes.length),
    extensionBytes,
  ]);
  const handshake = Buffer.concat([Buffer.from([0x01]), u24(body.length), body]);
  const size = options.recordSize ?? 16384;
  const records: Buffer[] = [];
  for (let i = 0; i < handshake.length; i += size) {
    const fragment = handshake.subarray(i, i + size);
    records.push(Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(fragment.length), fragment]));
  }
  return Buffer.concat(records);
}
