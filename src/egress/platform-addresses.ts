import { silentLogger, type Logger } from '../domain/logger.js';
import { linkSignals } from '../domain/linked-signal.js';
import { abortable } from './abortable.js';
import { classifyAddress } from './address-policy.js';
import { parseCidr, type Cidr } from './cidr.js';
import { systemResolver, type HostResolver } from './host-resolver.js';
import { parseIp, unmapIp, type IpAddress } from './ip-address.js';

/** Addresses an EgressProxy refuses whatever the rules say, read on every check (they may change). */
export interface DeniedAddressSource {
  /** The blocks denied right now. Cheap: called once per vetted connection. */
  current(): readonly Cidr[];
}

/** Options of PlatformAddresses. */
export interface PlatformAddressesOptions {
  /** Fixed addresses and CIDR blocks (the operator's list, this machine's addresses). */
  ranges?: readonly string[];
  /**
   * Host names or IP literals of the services the platform talks to (database, Redis, the
   * Kubernetes API servers), resolved by refresh(). Loopback answers are skipped: the
   * platform's proxies refuse all of loopback anyway (PLATFORM_LOCAL_CLASSES).
   */
  hosts?: readonly string[];
  /** @default systemResolver */
  resolver?: HostResolver;
  /** Time for one name's resolution. @default 5_000 */
  dnsTimeoutMs?: number;
  /**
   * How long an address stays denied after the last resolution that returned it. DNS may
   * answer with a subset of a service's addresses, or move it; an address the platform
   * used a moment ago keeps being refused for a while. @default 3_600_000
   */
  retainMs?: number;
  /** @default Date.now */
  now?: () => number;
  logger?: Logger;
}

/**
 * The platform's own addresses, as a DeniedAddressSource for its egress proxies: fixed
 * blocks plus the resolved addresses of the services the platform connects to, so that an
 * agent's address rule (any tenant may write one) cannot reach the platform's database,
 * Redis or Kubernetes API through the proxy. Names are resolved by refresh(), which the
 * owner calls at start and periodically; a failed resolution keeps the addresses known
 * before (never fewer denials because DNS hiccuped).
 */
export class PlatformAddresses implements DeniedAddressSource {
  private readonly fixed: readonly Cidr[];
  private readonly hosts: readonly string[];
  private readonly resolver: HostResolver;
  private readonly dnsTimeoutMs: number;
  private readonly retainMs: number;
  private readonly now: () => number;
  private readonly logger: Logger;
  /** Resolved addresses (canonical text) and when a resolution last returned them. */
  private readonly seen = new Map<string, { cidr: Cidr; lastSeenMs: number }>();
  private snapshot: readonly Cidr[];

  /** @throws InputError (INVALID_CIDR) when a fixed range is malformed. */
  constructor(options: PlatformAddressesOptions = {}) {
    this.fixed = dedupe(options.ranges ?? []).map((r) => parseCidr(r));
    this.hosts = dedupe((options.hosts ?? []).map((h) => h.replace(/^\[(.*)\]$/, '$1')).filter((h) => h !== ''));
    this.resolver = options.resolver ?? systemResolver;
    this.dnsTimeoutMs = options.dnsTimeoutMs ?? 5_000;
    this.retainMs = options.retainMs ?? 3_600_000;
    this.now = options.now ?? Date.now;
    this.logger = options.logger ?? silentLogger;
    this.snapshot = this.fixed;
  }

  current(): readonly Cidr[] {
    return this.snapshot;
  }

  /** The host names (and literals) this resolves, for logs and tests. */
  get names(): readonly string[] {
    return this.hosts;
  }

  /**
   * Resolves every host once more and rebuilds the list. Never throws for a name that does
   * not resolve (logged; its earlier addresses stay until retainMs passes).
   * @throws the signal's reason when it aborts.
   */
  async refresh(signal?: AbortSignal): Promise<void> {
    const nowMs = this.now();
    await Promise.all(
      this.hosts.map(async (host) => {
        for (const ip of await this.resolve(host, signal)) {
          // Loopback is refused by class on the platform's proxies; listing it would also
          // refuse a trusted test hosts file's 127.0.0.1 (tests run the database there).
          if (classifyAddress(ip) === 'loopback') continue;
          const cidr: Cidr = { family: ip.family, base: ip.value, prefixLength: ip.family === 4 ? 32 : 128 };
          this.seen.set(`${ip.family}/${ip.value}`, { cidr, lastSeenMs: nowMs });
        }
      }),
    );
    signal?.throwIfAborted();
    for (const [key, entry] of this.seen) if (nowMs - entry.lastSeenMs > this.retainMs) this.seen.delete(key);
    this.snapshot = [...this.fixed, ...[...this.seen.values()].map((e) => e.cidr)];
  }

  private async resolve(host: string, signal: AbortSignal | undefined): Promise<IpAddress[]> {
    const literal = parseIp(host);
    if (literal !== undefined) return [unmapIp(literal)];
    const dns = linkSignals(signal, AbortSignal.timeout(this.dnsTimeoutMs));
    try {
      const answers = await abortable(this.resolver.resolve(host, dns.signal), dns.signal);
      return answers.map((a) => parseIp(a)).filter((ip): ip is IpAddress => ip !== undefined).map(unmapIp);
    } catch (err) {
      signal?.throwIfAborted();
      this.logger.warn({ err, host }, 'egress proxy: could not resolve a platform service to refuse it; keeping the addresses known before');
      return [];
    } finally {
      dns.dispose();
    }
  }
}

function dedupe(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/** The host of a service URL (postgres://..., redis://..., https://...), or undefined when there is none. */
export function hostOfUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    const host = new URL(url).hostname;
    return host === '' ? undefined : host.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}
