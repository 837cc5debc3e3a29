import { lookup } from 'node:dns/promises';

/**
 * Resolves host names for the egress proxy. The proxy, not the agent, resolves, so the
 * address it vets is the address it connects to.
 */
export interface HostResolver {
  /**
   * All addresses for `host` (IPv4 and IPv6, as text), in preference order.
   * @throws any error when the name does not resolve; an empty list counts as a failure too.
   *   Should stop early when `signal` aborts (the proxy also stops waiting on its own).
   */
  resolve(host: string, signal: AbortSignal): Promise<readonly string[]>;
}

/** The operating system's resolver (getaddrinfo through dns.promises.lookup, all addresses). */
export const systemResolver: HostResolver = {
  async resolve(host: string, signal: AbortSignal): Promise<readonly string[]> {
    signal.throwIfAborted();
    // getaddrinfo cannot be cancelled; the proxy races this promise against its DNS timeout.
    const answers = await lookup(host, { all: true, verbatim: true });
    return answers.map((a) => a.address);
  },
};

/** A resolver from a fixed table, e.g. for tests: names not in the table fail with ENOTFOUND. */
export function staticResolver(table: Readonly<Record<string, readonly string[]>>): HostResolver {
  return {
    async resolve(host: string): Promise<readonly string[]> {
      const answers = table[host];
      if (answers === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return answers;
    },
  };
}
