import { describe, expect, it } from 'vitest';
import { formatCidr } from './cidr.js';
import type { HostResolver } from './host-resolver.js';
import { hostOfUrl, PlatformAddresses } from './platform-addresses.js';

/** A resolver whose answers the test changes between refreshes; `null` fails the lookup. */
function changingResolver(table: Record<string, string[] | null>): HostResolver {
  return {
    async resolve(host) {
      const answers = table[host];
      if (answers === undefined || answers === null) throw new Error(`getaddrinfo ENOTFOUND ${host}`);
      return answers;
    },
  };
}

describe('PlatformAddresses', () => {
  it('denies fixed ranges, literals and resolved names; skips loopback; keeps addresses through a failed lookup until retainMs passes', async () => {
    const table: Record<string, string[] | null> = { 'db.internal': ['10.1.2.3', '::ffff:10.1.2.4'], localhost: ['127.0.0.1', '::1'] };
    let now = 0;
    const platform = new PlatformAddresses({ ranges: ['10.20.0.0/16'], hosts: ['db.internal', 'localhost', '[fd00::5]', '10.96.0.1'], resolver: changingResolver(table), retainMs: 1_000, now: () => now });
    expect(platform.current().map(formatCidr)).toEqual(['10.20.0.0/16']);
    await platform.refresh();
    expect(platform.current().map(formatCidr).sort()).toEqual(['10.1.2.3', '10.1.2.4', '10.20.0.0/16', '10.96.0.1', 'fd00::5'].sort());
    table['db.internal'] = null;
    now = 500;
    await platform.refresh();
    expect(platform.current().map(formatCidr)).toContain('10.1.2.3');
    now = 2_000;
    table['db.internal'] = ['10.1.2.9'];
    await platform.refresh();
    const after = platform.current().map(formatCidr);
    expect(after).toContain('10.1.2.9');
    expect(after).not.toContain('10.1.2.3');
  });

  it('reads the host of service URLs', () => {
    expect(hostOfUrl('postgres://u:p@db.internal:5432/x')).toBe('db.internal');
    expect(hostOfUrl('redis://[fd00::5]:6379')).toBe('fd00::5');
    expect(hostOfUrl('sqlite:///var/lib/x.db')).toBeUndefined();
    expect(hostOfUrl(undefined)).toBeUndefined();
  });
});
