import { describe, expect, it } from 'vitest';
import { compileAllowlist } from './allowlist.js';
import { parseAuthority, type EgressTarget } from './authority.js';
import { parseCidr } from './cidr.js';
import { checkResolved, checkTarget } from './egress-decision.js';
import { parseIp, type IpAddress } from './ip-address.js';

const target = (text: string): EgressTarget => {
  const parsed = parseAuthority(text);
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed.target;
};
const ips = (...texts: string[]): IpAddress[] => texts.map((t) => parseIp(t)!);

describe('checkTarget', () => {
  const allowlist = compileAllowlist(['api.example.com:443', '10.1.0.0/16:5432', '169.254.169.254:80']);

  it('allows listed names and addresses, refuses the rest', () => {
    expect(checkTarget(allowlist, target('api.example.com:443'), [])).toMatchObject({ ok: true, rule: { text: 'api.example.com:443' } });
    expect(checkTarget(allowlist, target('10.1.2.3:5432'), [])).toMatchObject({ ok: true });
    expect(checkTarget(allowlist, target('evil.com:443'), [])).toEqual({ ok: false, reason: 'not-in-allowlist', message: 'egress to evil.com:443 denied: not in allowlist' });
    expect(checkTarget(allowlist, target('10.2.0.1:5432'), [])).toMatchObject({ ok: false, reason: 'not-in-allowlist' });
  });

  it('lets an explicit address rule reach a special address, but never a denied range', () => {
    expect(checkTarget(allowlist, target('169.254.169.254:80'), [])).toMatchObject({ ok: true });
    expect(checkTarget(allowlist, target('10.1.0.5:5432'), [parseCidr('10.1.0.5')])).toMatchObject({ ok: false, reason: 'denied-range' });
  });
});

describe('checkResolved', () => {
  const allowlist = compileAllowlist(['api.example.com:443', 'db.internal:5432', '10.9.0.0/16:5432']);
  const opts = { trusted: false, deniedRanges: [] };

  it('allows public answers', () => {
    expect(checkResolved(allowlist, target('api.example.com:443'), ips('93.184.216.34', '2606:4700::1'), opts)).toEqual({ ok: true });
  });

  it('refuses when any answer is special, naming the address and its class', () => {
    const result = checkResolved(allowlist, target('api.example.com:443'), ips('93.184.216.34', '169.254.169.254'), opts);
    expect(result).toMatchObject({ ok: false, reason: 'private-address', resolvedIp: '169.254.169.254' });
    expect(!result.ok && result.message).toContain('(metadata)');
    for (const addr of ['127.0.0.1', '10.0.0.1', '172.20.0.1', '192.168.0.1', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', 'fe80::1', 'fd00::1']) {
      expect(checkResolved(allowlist, target('api.example.com:443'), ips(addr), opts), addr).toMatchObject({ ok: false, reason: 'private-address' });
    }
  });

  it('accepts a private answer that an address rule names for the same port', () => {
    expect(checkResolved(allowlist, target('db.internal:5432'), ips('10.9.1.1'), opts)).toEqual({ ok: true });
    expect(checkResolved(allowlist, target('db.internal:5432'), ips('10.8.1.1'), opts)).toMatchObject({ ok: false });
  });

  it('trusted answers skip the class check but not denied ranges; no answers is a DNS failure', () => {
    expect(checkResolved(allowlist, target('api.example.com:443'), ips('127.0.0.1'), { trusted: true, deniedRanges: [] })).toEqual({ ok: true });
    expect(checkResolved(allowlist, target('api.example.com:443'), ips('127.0.0.1'), { trusted: true, deniedRanges: [parseCidr('127.0.0.0/8')] })).toMatchObject({
      ok: false,
      reason: 'denied-range',
    });
    expect(checkResolved(allowlist, target('api.example.com:443'), ips('8.8.8.8'), { trusted: false, deniedRanges: [parseCidr('8.8.8.0/24')] })).toMatchObject({ reason: 'denied-range' });
    expect(checkResolved(allowlist, target('api.example.com:443'), [], opts)).toMatchObject({ ok: false, reason: 'dns-failure' });
  });
});
