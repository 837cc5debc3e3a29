import { InputError } from '../domain/errors.js';
import type { EgressTarget } from './authority.js';
import { cidrContains, parseCidr, type Cidr } from './cidr.js';
import { checkHostname } from './hostname.js';
import type { IpAddress } from './ip-address.js';

/** An inclusive range of TCP ports. */
export interface PortRange {
  readonly fromPort: number;
  readonly toPort: number;
}

interface RuleBase {
  /** The rule as written. */
  readonly text: string;
  readonly ports: readonly PortRange[];
}

/** `api.openai.com[:ports]`: exactly this host name. */
export interface HostRule extends RuleBase {
  readonly kind: 'host';
  readonly host: string;
}

/** `*.pypi.org[:ports]`: any name ending in `.pypi.org`, at any depth; never `pypi.org` itself. */
export interface WildcardRule extends RuleBase {
  readonly kind: 'wildcard';
  /** The part after `*.`, e.g. `pypi.org`. */
  readonly suffix: string;
}

/** `10.20.0.0/16:5432`, `1.2.3.4:443`, `[2001:db8::/32]:443`: destinations written as IP literals. */
export interface AddressRule extends RuleBase {
  readonly kind: 'address';
  readonly cidr: Cidr;
}

export type AllowRule = HostRule | WildcardRule | AddressRule;

/** Ports a rule without `:port` allows: plain HTTP and HTTPS. */
export const DEFAULT_RULE_PORTS: readonly PortRange[] = Object.freeze([
  { fromPort: 80, toPort: 80 },
  { fromPort: 443, toPort: 443 },
]);

/** Longest rule text accepted; a guard against pasting a file into one rule. */
export const MAX_RULE_LENGTH = 300;
/** Most rules one allowlist may hold. */
export const MAX_RULES = 1000;

const PORT_NUMBER = /^[1-9][0-9]{0,4}$/;

function ruleError(text: string, message: string): InputError {
  return new InputError(`egress rule "${text}": ${message}`, { rule: text }, 'INVALID_EGRESS_RULE');
}

function parsePort(text: string, rule: string): number {
  if (!PORT_NUMBER.test(text) || Number(text) > 65535) throw ruleError(rule, `"${text}" is not a port from 1 to 65535`);
  return Number(text);
}

function parsePorts(text: string | undefined, rule: string): readonly PortRange[] {
  if (text === undefined) return DEFAULT_RULE_PORTS;
  if (text === '*') return [{ fromPort: 1, toPort: 65535 }];
  const dash = text.indexOf('-');
  if (dash < 0) {
    const port = parsePort(text, rule);
    return [{ fromPort: port, toPort: port }];
  }
  const fromPort = parsePort(text.slice(0, dash), rule);
  const toPort = parsePort(text.slice(dash + 1), rule);
  if (fromPort > toPort) throw ruleError(rule, `port range ${text} is empty (first port is larger than the last)`);
  return [{ fromPort, toPort }];
}

function parseAddressPart(addressText: string, rule: string): Cidr {
  let cidr: Cidr;
  try {
    cidr = parseCidr(addressText);
  } catch (err) {
    throw ruleError(rule, err instanceof Error ? err.message : String(err));
  }
  // A mapped rule would never match: the proxy compares IPv4 destinations in their IPv4 form.
  if (cidr.family === 6 && cidr.prefixLength >= 96 && cidr.base >> 32n === 0xffffn) {
    throw ruleError(rule, 'IPv4-mapped IPv6 addresses are not accepted; write the IPv4 address');
  }
  return cidr;
}

/**
 * Parses one allow rule. Pure.
 *
 * Grammar (`PORTS` is `443`, `8000-8100` or `*` for every port; without `:PORTS` a rule
 * allows ports 80 and 443 only):
 * - `host[:PORTS]`: exactly that DNS name (`api.openai.com:443`).
 * - `*.suffix[:PORTS]`: any name below `suffix`, at any depth (`files.pypi.org`,
 *   `a.b.pypi.org`), but not `suffix` itself: add `pypi.org` as its own rule for the apex.
 *   The suffix needs at least two labels (`*.com` is refused as too broad).
 * - `a.b.c.d[:PORTS]`, `a.b.c.d/n[:PORTS]`: an IPv4 address or block.
 * - `[v6][:PORTS]`, `[v6/n][:PORTS]`, or bare `v6` / `v6/n` (then with the default ports).
 *
 * Only address rules can unlock private, loopback, link-local and other special addresses;
 * a host-name rule never does, even when the name resolves to such an address.
 * @throws InputError (code INVALID_EGRESS_RULE) saying what is wrong with the rule.
 */
export function parseAllowRule(text: string): AllowRule {
  if (typeof text !== 'string') throw ruleError(String(text), 'a rule must be a string');
  const rule = text.trim();
  if (rule === '') throw ruleError(text, 'rule is empty');
  if (rule.length > MAX_RULE_LENGTH) throw ruleError(rule.slice(0, 40) + '...', `rule is longer than ${MAX_RULE_LENGTH} characters`);

  if (rule.startsWith('[')) {
    const close = rule.indexOf(']');
    if (close < 0) throw ruleError(rule, 'unterminated "["');
    const after = rule.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw ruleError(rule, 'expected ":PORTS" after "]"');
    const cidr = parseAddressPart(rule.slice(1, close), rule);
    if (cidr.family !== 6) throw ruleError(rule, 'brackets are only for IPv6; write IPv4 as a.b.c.d:port');
    return { kind: 'address', text: rule, cidr, ports: parsePorts(after === '' ? undefined : after.slice(1), rule) };
  }
  const colons = rule.split(':').length - 1;
  if (colons >= 2) {
    // Unbracketed IPv6 cannot carry a port without ambiguity, so it gets the default ports.
    return { kind: 'address', text: rule, cidr: parseAddressPart(rule, rule), ports: DEFAULT_RULE_PORTS };
  }
  const colon = rule.lastIndexOf(':');
  const hostPart = colon < 0 ? rule : rule.slice(0, colon);
  const ports = parsePorts(colon < 0 ? undefined : rule.slice(colon + 1), rule);

  if (/^[0-9.]+(\/[0-9]*)?$/.test(hostPart) || hostPart.includes('/')) {
    return { kind: 'address', text: rule, cidr: parseAddressPart(hostPart, rule), ports };
  }
  if (hostPart.startsWith('*.')) {
    const checked = checkHostname(hostPart.slice(2));
    if ('error' in checked) throw ruleError(rule, checked.error);
    if (!checked.host.includes('.')) throw ruleError(rule, `"*.${checked.host}" is too broad; a wildcard needs at least two labels after "*."`);
    return { kind: 'wildcard', text: rule, suffix: checked.host, ports };
  }
  if (hostPart.includes('*')) throw ruleError(rule, 'only a leading "*." wildcard is supported (e.g. *.pypi.org)');
  const checked = checkHostname(hostPart);
  if ('error' in checked) throw ruleError(rule, checked.error);
  return { kind: 'host', text: rule, host: checked.host, ports };
}

const portAllowed = (rule: AllowRule, port: number): boolean =>
  rule.ports.some((range) => port >= range.fromPort && port <= range.toPort);

/**
 * A compiled allowlist: immutable, cheap to match. Build it with compileAllowlist().
 * Host names are looked up in a map, wildcards by walking the name's suffixes, so matching
 * costs O(labels + address rules) per connection.
 */
export class Allowlist {
  private readonly exact = new Map<string, HostRule[]>();
  private readonly wildcards = new Map<string, WildcardRule[]>();
  private readonly addresses: AddressRule[] = [];

  constructor(readonly rules: readonly AllowRule[]) {
    for (const rule of rules) {
      if (rule.kind === 'host') this.exact.set(rule.host, [...(this.exact.get(rule.host) ?? []), rule]);
      else if (rule.kind === 'wildcard') this.wildcards.set(rule.suffix, [...(this.wildcards.get(rule.suffix) ?? []), rule]);
      else this.addresses.push(rule);
    }
  }

  /** The first host or wildcard rule allowing `host` (normalised, see checkHostname) on `port`. */
  matchHost(host: string, port: number): HostRule | WildcardRule | undefined {
    const exact = this.exact.get(host)?.find((rule) => portAllowed(rule, port));
    if (exact !== undefined) return exact;
    for (let dot = host.indexOf('.'); dot >= 0; dot = host.indexOf('.', dot + 1)) {
      const hit = this.wildcards.get(host.slice(dot + 1))?.find((rule) => portAllowed(rule, port));
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  /** The first address rule whose block contains `ip` (pass it through unmapIp) on `port`. */
  matchAddress(ip: IpAddress, port: number): AddressRule | undefined {
    return this.addresses.find((rule) => cidrContains(rule.cidr, ip) && portAllowed(rule, port));
  }

  /** The rule allowing a target: address rules for IP literals, host rules for names. */
  match(target: EgressTarget): AllowRule | undefined {
    return target.ip !== undefined ? this.matchAddress(target.ip, target.port) : this.matchHost(target.host, target.port);
  }

  /** The rules as written, e.g. to store or show them. */
  toStrings(): string[] {
    return this.rules.map((rule) => rule.text);
  }
}

/**
 * Parses and compiles a list of rules (see parseAllowRule for the grammar). Pure.
 * @throws InputError (code INVALID_EGRESS_RULE) listing every bad rule with its index in
 *   `details.errors`, so a user fixes them all in one go.
 */
export function compileAllowlist(texts: readonly string[]): Allowlist {
  if (!Array.isArray(texts)) throw new InputError('egress allowlist must be an array of rule strings', undefined, 'INVALID_EGRESS_RULE');
  if (texts.length > MAX_RULES) throw new InputError(`egress allowlist has ${texts.length} rules; at most ${MAX_RULES} are allowed`, undefined, 'INVALID_EGRESS_RULE');
  const rules: AllowRule[] = [];
  const errors: Array<{ index: number; rule: string; message: string }> = [];
  texts.forEach((text, index) => {
    try {
      rules.push(parseAllowRule(text));
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      errors.push({ index, rule: String(text), message: err.message });
    }
  });
  if (errors.length > 0) {
    const summary = errors.map((e) => `[${e.index}] ${e.message}`).join('; ');
    throw new InputError(`invalid egress allowlist: ${summary}`, { errors }, 'INVALID_EGRESS_RULE');
  }
  return new Allowlist(rules);
}
