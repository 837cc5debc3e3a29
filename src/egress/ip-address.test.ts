import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../domain/errors.js';
import { cidrContains, formatCidr, parseCidr } from './cidr.js';
import { canonicalIp, formatIp, parseIp, unmapIp } from './ip-address.js';

describe('parseIp / formatIp', () => {
  it('parses strict IPv4 and rejects the ambiguous forms resolvers disagree on', () => {
    expect(parseIp('192.168.1.10')).toEqual({ family: 4, value: 0xc0a8010an });
    for (const bad of ['010.0.0.1', '2130706433', '0x7f.0.0.1', '127.1', '1.2.3.256', '1.2.3.4.', ' 1.2.3.4', '']) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });

  it('parses IPv6 including :: and an embedded IPv4 tail, rejects zones and junk', () => {
    expect(formatIp(parseIp('2001:0DB8:0000:0000:0000:0000:0000:0001')!)).toBe('2001:db8::1');
    expect(formatIp(parseIp('::')!)).toBe('::');
    expect(formatIp(parseIp('::1')!)).toBe('::1');
    expect(formatIp(parseIp('1::')!)).toBe('1::');
    expect(formatIp(parseIp('1:0:0:2:0:0:0:3')!)).toBe('1:0:0:2::3');
    expect(formatIp(parseIp('::ffff:1.2.3.4')!)).toBe('::ffff:102:304');
    for (const bad of ['fe80::1%eth0', '1:::2', '1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '::1.2.3']) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });

  it('unmaps IPv4-mapped IPv6 addresses', () => {
    expect(canonicalIp('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(canonicalIp('::FFFF:7f00:1')).toBe('127.0.0.1');
    expect(unmapIp(parseIp('::1')!)).toEqual(parseIp('::1'));
  });

  it('round-trips every address through format and parse (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (text) => {
        const ip = parseIp(text);
        expect(ip).toBeDefined();
        expect(parseIp(formatIp(ip!))).toEqual(ip);
      }),
      { numRuns: 500 },
    );
  });
});

describe('cidr', () => {
  it('parses blocks, checks containment, refuses host bits', () => {
    const block = parseCidr('172.16.0.0/12');
    expect(cidrContains(block, parseIp('172.31.255.255')!)).toBe(true);
    expect(cidrContains(block, parseIp('172.32.0.0')!)).toBe(false);
    expect(cidrContains(parseCidr('0.0.0.0/0'), parseIp('8.8.8.8')!)).toBe(true);
    expect(cidrContains(parseCidr('0.0.0.0/0'), parseIp('::1')!)).toBe(false);
    expect(cidrContains(parseCidr('fe80::/10'), parseIp('febf::1')!)).toBe(true);
    expect(formatCidr(parseCidr('10.0.0.1'))).toBe('10.0.0.1');
    expect(formatCidr(parseCidr('2001:db8::/32'))).toBe('2001:db8::/32');
    expect(() => parseCidr('10.0.0.1/8')).toThrow(InputError);
    expect(() => parseCidr('10.0.0.0/08')).toThrow(/prefix length/);
  });
});
