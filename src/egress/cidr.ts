import { InputError } from '../domain/errors.js';
import { formatIp, parseIp, type IpAddress } from './ip-address.js';

/** A block of addresses: `base/prefixLength`. A single address is a /32 (IPv4) or /128 (IPv6). */
export interface Cidr {
  readonly family: 4 | 6;
  /** The first address of the block, as an integer; host bits are zero. */
  readonly base: bigint;
  readonly prefixLength: number;
}

const bitsOf = (family: 4 | 6): number => (family === 4 ? 32 : 128);

function maskOf(family: 4 | 6, prefixLength: number): bigint {
  const bits = BigInt(bitsOf(family));
  const all = (1n << bits) - 1n;
  return (all >> BigInt(prefixLength)) ^ all;
}

/**
 * Parses `a.b.c.d/n`, `x:y::/n` or a bare address (taken as /32 or /128).
 * @throws InputError (code INVALID_CIDR) naming the problem; host bits must be zero, so a
 *   typo such as `10.20.1.0/16` is caught instead of silently widened.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addressText);
  if (ip === undefined) throw new InputError(`"${addressText}" is not an IPv4 or IPv6 address`, { value: text }, 'INVALID_CIDR');
  const bits = bitsOf(ip.family);
  let prefixLength = bits;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lengthText) || Number(lengthText) > bits) {
      throw new InputError(`"${text}": prefix length must be an integer from 0 to ${bits}`, { value: text }, 'INVALID_CIDR');
    }
    prefixLength = Number(lengthText);
  }
  const mask = maskOf(ip.family, prefixLength);
  if ((ip.value & ~mask & ((1n << BigInt(bits)) - 1n)) !== 0n) {
    const base = formatIp({ family: ip.family, value: ip.value & mask });
    throw new InputError(`"${text}" has host bits set; did you mean ${base}/${prefixLength}?`, { value: text }, 'INVALID_CIDR');
  }
  return { family: ip.family, base: ip.value, prefixLength };
}

/**
 * Whether `ip` lies inside `cidr`. Different families never match, so callers pass addresses
 * through unmapIp first (the proxy does).
 */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  return (ip.value & maskOf(cidr.family, cidr.prefixLength)) === cidr.base;
}

/** Formats a block as `base/prefixLength`, or the bare address for a single-address block. */
export function formatCidr(cidr: Cidr): string {
  const base = formatIp({ family: cidr.family, value: cidr.base });
  return cidr.prefixLength === bitsOf(cidr.family) ? base : `${base}/${cidr.prefixLength}`;
}
