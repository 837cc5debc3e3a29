import { cidrContains, parseCidr, type Cidr } from './cidr.js';
import type { IpAddress } from './ip-address.js';

/**
 * What kind of destination an address is. Everything but `public` is a special-purpose
 * range (RFC 6890 and friends) that an agent must not reach through a host-name rule.
 *
 * - `metadata`: cloud instance metadata (169.254.169.254, fd00:ec2::254); a subset of link-local.
 * - `private`: RFC 1918, IPv6 unique-local fc00::/7, deprecated site-local fec0::/10, local NAT64.
 * - `cgnat`: shared address space 100.64.0.0/10.
 * - `reserved`: documentation, benchmarking, IETF protocol assignments, 240/4 and broadcast,
 *   IPv6 outside global unicast 2000::/3, Teredo.
 */
export type AddressClass =
  | 'public'
  | 'unspecified'
  | 'loopback'
  | 'link-local'
  | 'metadata'
  | 'private'
  | 'cgnat'
  | 'multicast'
  | 'reserved';

type Entry = readonly [Cidr, AddressClass | 'embedded-v4'];
const table = (rows: ReadonlyArray<readonly [string, AddressClass | 'embedded-v4']>): Entry[] =>
  rows.map(([text, cls]) => [parseCidr(text), cls] as const);

// Order matters: the first block that contains the address decides, so specific blocks
// (metadata) come before the blocks that contain them (link-local).
const V4 = table([
  ['0.0.0.0/8', 'unspecified'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.169.254', 'metadata'],
  ['169.254.0.0/16', 'link-local'],
  ['10.0.0.0/8', 'private'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'reserved'],
  ['192.88.99.0/24', 'reserved'],
  ['198.18.0.0/15', 'reserved'],
  ['198.51.100.0/24', 'reserved'],
  ['203.0.113.0/24', 'reserved'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
]);

const V6 = table([
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  // IPv4-mapped, NAT64 and 6to4 addresses carry an IPv4 address that decides their class.
  ['::ffff:0:0/96', 'embedded-v4'],
  ['64:ff9b::/96', 'embedded-v4'],
  ['64:ff9b:1::/48', 'private'],
  ['2002::/16', 'embedded-v4'],
  ['2001:db8::/32', 'reserved'],
  ['2001::/23', 'reserved'],
  ['fd00:ec2::254/128', 'metadata'],
  ['fc00::/7', 'private'],
  ['fec0::/10', 'private'],
  ['fe80::/10', 'link-local'],
  ['ff00::/8', 'multicast'],
  ['2000::/3', 'public'],
]);

function embeddedV4(ip: IpAddress): IpAddress {
  // 6to4 puts the IPv4 address in bits 16..47; mapped and NAT64 put it in the low 32 bits.
  const is6to4 = ip.value >> 112n === 0x2002n;
  const value = is6to4 ? (ip.value >> 80n) & 0xffffffffn : ip.value & 0xffffffffn;
  return { family: 4, value };
}

/** Classifies an address. Pure and total: any IPv6 address outside 2000::/3 is `reserved`. */
export function classifyAddress(ip: IpAddress): AddressClass {
  const rows = ip.family === 4 ? V4 : V6;
  for (const [cidr, cls] of rows) {
    if (!cidrContains(cidr, ip)) continue;
    return cls === 'embedded-v4' ? classifyAddress(embeddedV4(ip)) : cls;
  }
  return ip.family === 4 ? 'public' : 'reserved';
}

/**
 * Classes that lead to the machine the proxy runs on, or to its cloud provider, rather than to
 * another host: the platform's loopback services (its API, a local database), the metadata
 * service and link-local neighbours, and 0.0.0.0 (which Linux connects to loopback). The
 * platform's proxies refuse them even to an address rule (EgressProxyOptions.lockedAddressClasses):
 * any tenant may write address rules, and through the proxy these addresses are the
 * platform's, not the agent's.
 */
export const PLATFORM_LOCAL_CLASSES: readonly AddressClass[] = ['loopback', 'unspecified', 'link-local', 'metadata'];
