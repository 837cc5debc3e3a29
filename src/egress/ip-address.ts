/**
 * IP addresses as integers, parsed strictly. Pure: no I/O library.
 *
 * Strict on purpose: the proxy must agree with itself about what an address is. Forms that
 * some resolvers accept and others do not ("010.0.0.1" as octal, "2130706433", "0x7f.1",
 * IPv6 zone ids) are rejected here, so they are treated as host names and then refused
 * because their last label is numeric (see hostname.ts).
 */
export interface IpAddress {
  readonly family: 4 | 6;
  /** The address as an unsigned integer (32 bits for IPv4, 128 bits for IPv6). */
  readonly value: bigint;
}

const V4_PART = /^(0|[1-9][0-9]{0,2})$/;
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;
const MAPPED_PREFIX = 0xffffn << 32n;

function parseV4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!V4_PART.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseV6(text: string): bigint | undefined {
  let s = text;
  let v4Tail: bigint | undefined;
  const lastColon = s.lastIndexOf(':');
  if (lastColon < 0) return undefined;
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    v4Tail = parseV4(tail);
    if (v4Tail === undefined) return undefined;
    // Replace the dotted tail by two 16-bit groups so the group count below stays simple.
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const rest = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  if (halves.length === 1 && head.length !== 8) return undefined;
  if (halves.length === 2 && head.length + rest.length > 7) return undefined;
  const groups = [...head, ...Array<string>(8 - head.length - rest.length).fill('0'), ...rest];
  let value = 0n;
  for (const group of groups) {
    if (!V6_GROUP.test(group)) return undefined;
    value = (value << 16n) | BigInt(parseInt(group, 16));
  }
  if (v4Tail !== undefined) value = (value & ~0xffffffffn) | v4Tail;
  return value;
}

/** Parses a strict IPv4 dotted quad or an IPv6 address (no brackets, no zone id). */
export function parseIp(text: string): IpAddress | undefined {
  if (text.includes(':')) {
    const value = parseV6(text);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseV4(text);
  return value === undefined ? undefined : { family: 4, value };
}

/**
 * Turns an IPv4-mapped IPv6 address (::ffff:a.b.c.d) into the IPv4 address it stands for;
 * returns other addresses unchanged. Sockets on a dual-stack listener report IPv4 peers in
 * the mapped form, and a connect() to a mapped address reaches the IPv4 host, so both the
 * agent registry and the policy must see the plain IPv4 address.
 */
export function unmapIp(ip: IpAddress): IpAddress {
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return { family: 4, value: ip.value & 0xffffffffn };
  return ip;
}

/** The IPv4-mapped IPv6 form of an IPv4 address. */
export function mapIpv4(ip: IpAddress): IpAddress {
  return ip.family === 4 ? { family: 6, value: MAPPED_PREFIX | ip.value } : ip;
}

function formatV4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/** Formats an address canonically (RFC 5952 for IPv6: lower case, longest zero run as ::). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return formatV4(ip.value);
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((ip.value >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (g: number[]): string => g.map((n) => n.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Parses and canonicalises an address (mapped IPv4 becomes plain IPv4); undefined if invalid. */
export function canonicalIp(text: string): string | undefined {
  const ip = parseIp(text);
  return ip === undefined ? undefined : formatIp(unmapIp(ip));
}
