import { classifyAddress, type AddressClass } from './address-policy.js';
import type { AllowRule, Allowlist } from './allowlist.js';
import { formatTarget, type EgressTarget } from './authority.js';
import { cidrContains, type Cidr } from './cidr.js';
import type { EgressReason } from './egress-audit.js';
import { formatIp, type IpAddress } from './ip-address.js';

/** A refusal: the reason for the audit and a one-line message for the agent. */
export interface EgressDenial {
  readonly ok: false;
  readonly reason: Exclude<EgressReason, 'allowed'>;
  readonly message: string;
  /** The address that caused the refusal, when one did. */
  readonly resolvedIp?: string;
  /** The allow rule that matched the name before a later check refused it. */
  readonly rule?: string;
}

export type TargetCheck = { readonly ok: true; readonly rule: AllowRule } | EgressDenial;
export type AddressCheck = { readonly ok: true } | EgressDenial;

/** The text the agent reads in a 403 body: "egress to evil.com:443 denied: not in allowlist". */
export function denialMessage(target: { host: string; port: number | null }, why: string): string {
  return `egress to ${formatTarget(target)} denied: ${why}`;
}

const inDenied = (deniedRanges: readonly Cidr[], ip: IpAddress): boolean => deniedRanges.some((c) => cidrContains(c, ip));
const NONE: ReadonlySet<AddressClass> = new Set();
const lockedMessage = (cls: AddressClass): string => `${cls} addresses are the platform's own and no rule allows them through this proxy`;

/**
 * First stage, before any DNS: may this agent name this destination? Pure.
 * IP literals match only address rules and are checked against `deniedRanges` and
 * `lockedClasses` (address classes no rule unlocks) here; names
 * match only host and wildcard rules. Names that no rule allows are never resolved, so an
 * agent cannot use the proxy's resolver to leak data through DNS queries.
 */
export function checkTarget(allowlist: Allowlist, target: EgressTarget, deniedRanges: readonly Cidr[], lockedClasses: ReadonlySet<AddressClass> = NONE): TargetCheck {
  if (target.ip !== undefined && inDenied(deniedRanges, target.ip)) {
    return { ok: false, reason: 'denied-range', message: denialMessage(target, 'address is reserved for the platform'), resolvedIp: target.host };
  }
  const cls = target.ip === undefined ? undefined : classifyAddress(target.ip);
  if (cls !== undefined && lockedClasses.has(cls)) {
    return { ok: false, reason: 'denied-range', message: denialMessage(target, lockedMessage(cls)), resolvedIp: target.host };
  }
  const rule = allowlist.match(target);
  if (rule === undefined) return { ok: false, reason: 'not-in-allowlist', message: denialMessage(target, 'not in allowlist') };
  return { ok: true, rule };
}

/**
 * Second stage, after the proxy resolved a name allowed by a host or wildcard rule: may it
 * connect to these addresses? Pure. Every address must pass, because the proxy may fall back
 * to any of them:
 * - none may be in `deniedRanges` (the platform's own addresses; no rule unlocks them);
 * - none may be of a `lockedClasses` class (loopback, link-local, ... on the platform's
 *   proxies; see PLATFORM_LOCAL_CLASSES); no rule unlocks them either;
 * - a special-purpose address (see classifyAddress) passes only when an address rule names
 *   it for this port. A host-name rule never unlocks one: otherwise whoever controls the DNS
 *   of an allowed name could point it at 169.254.169.254 or 10.0.0.1 (DNS rebinding).
 * `trusted` (addresses from a hosts file with trustHostsFile, tests only) skips the
 * special-purpose and `lockedClasses` checks but not `deniedRanges`.
 */
export function checkResolved(
  allowlist: Allowlist,
  target: EgressTarget,
  addresses: readonly IpAddress[],
  options: { readonly trusted: boolean; readonly deniedRanges: readonly Cidr[]; readonly lockedClasses?: ReadonlySet<AddressClass> | undefined },
): AddressCheck {
  if (addresses.length === 0) return { ok: false, reason: 'dns-failure', message: denialMessage(target, 'name has no addresses') };
  for (const ip of addresses) {
    const text = formatIp(ip);
    if (inDenied(options.deniedRanges, ip)) {
      return { ok: false, reason: 'denied-range', message: denialMessage(target, `resolves to ${text}, which is reserved for the platform`), resolvedIp: text };
    }
    if (options.trusted) continue;
    const cls = classifyAddress(ip);
    if (options.lockedClasses?.has(cls) === true) {
      return { ok: false, reason: 'denied-range', message: denialMessage(target, `resolves to ${text}; ${lockedMessage(cls)}`), resolvedIp: text };
    }
    if (cls === 'public' || allowlist.matchAddress(ip, target.port) !== undefined) continue;
    return {
      ok: false,
      reason: 'private-address',
      message: denialMessage(target, `resolves to ${text} (${cls}); a host-name rule never allows ${cls} addresses, add an address rule for it`),
      resolvedIp: text,
    };
  }
  return { ok: true };
}
