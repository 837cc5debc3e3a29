import { describe, expect, it } from 'vitest';
import { InputError } from '../domain/errors.js';
import { compileAllowlist, parseAllowRule } from './allowlist.js';
import { parseIp } from './ip-address.js';

const ip = (text: string) => {
  const parsed = parseIp(text);
  if (parsed === undefined) throw new Error(text);
  return parsed;
};

describe('parseAllowRule', () => {
  it('parses host, host:port, port ranges and any-port', () => {
    expect(parseAllowRule('api.openai.com:443')).toMatchObject({ kind: 'host', host: 'api.openai.com', ports: [{ fromPort: 443, toPort: 443 }] });
    expect(parseAllowRule('API.OpenAI.com.')).toMatchObject({ kind: 'host', host: 'api.openai.com', ports: [{ fromPort: 80, toPort: 80 }, { fromPort: 443, toPort: 443 }] });
    expect(parseAllowRule('host:8000-8100').ports).toEqual([{ fromPort: 8000, toPort: 8100 }]);
    expect(parseAllowRule('host:*').ports).toEqual([{ fromPort: 1, toPort: 65535 }]);
    expect(parseAllowRule('  padded.example:22  ').text).toBe('padded.example:22');
  });

  it('parses wildcards, IPv4, IPv6 and CIDR rules', () => {
    expect(parseAllowRule('*.pypi.org')).toMatchObject({ kind: 'wildcard', suffix: 'pypi.org' });
    expect(parseAllowRule('10.20.0.0/16:5432')).toMatchObject({ kind: 'address', cidr: { family: 4, prefixLength: 16 }, ports: [{ fromPort: 5432, toPort: 5432 }] });
    expect(parseAllowRule('1.2.3.4:443')).toMatchObject({ kind: 'address', cidr: { family: 4, prefixLength: 32 } });
    expect(parseAllowRule('[2001:db8::1]:443')).toMatchObject({ kind: 'address', cidr: { family: 6, prefixLength: 128 } });
    expect(parseAllowRule('[2001:db8::/32]:1-1024').ports).toEqual([{ fromPort: 1, toPort: 1024 }]);
    expect(parseAllowRule('2001:db8::1')).toMatchObject({ kind: 'address', ports: [{ fromPort: 80, toPort: 80 }, { fromPort: 443, toPort: 443 }] });
  });

  it.each([
    ['', /empty/],
    ['*.com', /too broad/],
    ['*', /DNS label|wildcard/],
    ['a.*.example.com', /leading "\*\."/],
    ['evil.com:0', /not a port/],
    ['evil.com:65536', /not a port/],
    ['evil.com:http', /not a port/],
    ['evil.com:9000-8000', /empty/],
    ['10.20.1.0/16:5432', /host bits set; did you mean 10\.20\.0\.0\/16/],
    ['10.0.0.0/33', /prefix length/],
    ['256.1.1.1:80', /not an IPv4/],
    ['1.2.3:80', /not an IPv4/],
    ['[1.2.3.4]:80', /not an IPv4 or IPv6|brackets/],
    ['[::ffff:10.0.0.1]:443', /IPv4-mapped/],
    ['bad_host-.com', /DNS label/],
    ['bücher.de', /ASCII/],
    ['host:443:1', /IPv4 or IPv6/],
    ['x'.repeat(400), /longer than/],
  ])('rejects %j with a clear message', (text, message) => {
    let thrown: unknown;
    try {
      parseAllowRule(text);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(InputError);
    expect((thrown as InputError).code).toBe('INVALID_EGRESS_RULE');
    expect((thrown as InputError).message).toMatch(message);
  });
});

describe('compileAllowlist', () => {
  const list = compileAllowlist(['api.openai.com:443', 'pypi.org', '*.pypi.org', '10.20.0.0/16:5432', '[fd00::/8]:8000-8100', 'git.example:*']);

  it('matches exact hosts on their ports only', () => {
    expect(list.matchHost('api.openai.com', 443)?.text).toBe('api.openai.com:443');
    expect(list.matchHost('api.openai.com', 80)).toBeUndefined();
    expect(list.matchHost('openai.com', 443)).toBeUndefined();
    expect(list.matchHost('git.example', 22)?.text).toBe('git.example:*');
  });

  it('matches wildcards below the suffix at any depth, the apex only through its own rule', () => {
    expect(list.matchHost('files.pypi.org', 443)?.text).toBe('*.pypi.org');
    expect(list.matchHost('a.b.pypi.org', 80)?.text).toBe('*.pypi.org');
    expect(list.matchHost('pypi.org', 443)?.text).toBe('pypi.org');
    expect(list.matchHost('evilpypi.org', 443)).toBeUndefined();
    expect(list.matchHost('pypi.org.evil.com', 443)).toBeUndefined();
    expect(compileAllowlist(['*.pypi.org']).matchHost('pypi.org', 443)).toBeUndefined();
  });

  it('matches address rules by block and port range, and never host names to addresses', () => {
    expect(list.matchAddress(ip('10.20.255.1'), 5432)?.text).toBe('10.20.0.0/16:5432');
    expect(list.matchAddress(ip('10.21.0.1'), 5432)).toBeUndefined();
    expect(list.matchAddress(ip('10.20.0.1'), 5433)).toBeUndefined();
    expect(list.matchAddress(ip('fd12::1'), 8050)?.text).toBe('[fd00::/8]:8000-8100');
    expect(list.matchAddress(ip('fd12::1'), 8101)).toBeUndefined();
    expect(list.match({ host: '10.20.0.1', ip: ip('10.20.0.1'), port: 5432 })?.kind).toBe('address');
    expect(list.match({ host: 'api.openai.com', port: 443 })?.kind).toBe('host');
  });

  it('reports every bad rule with its index at once', () => {
    try {
      compileAllowlist(['ok.example', '*.com', 'ok2.example', 'x:0']);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      const details = (err as InputError).details as { errors: Array<{ index: number }> };
      expect(details.errors.map((e) => e.index)).toEqual([1, 3]);
      expect((err as InputError).message).toMatch(/\[1\].*\*\.com.*\[3\].*x:0/);
    }
  });

  it('keeps the rules as written', () => {
    expect(compileAllowlist(['a.example:1', '*.b.example']).toStrings()).toEqual(['a.example:1', '*.b.example']);
    expect(compileAllowlist([]).matchHost('a.example', 443)).toBeUndefined();
  });
});
