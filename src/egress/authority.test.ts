import { describe, expect, it } from 'vitest';
import { parseAbsoluteHttpUrl } from './absolute-url.js';
import { formatTarget, parseAuthority } from './authority.js';
import { checkHostname } from './hostname.js';

describe('parseAuthority', () => {
  it('parses names, IPv4, bracketed IPv6 and default ports', () => {
    expect(parseAuthority('API.OpenAI.com.:443')).toEqual({ target: { host: 'api.openai.com', port: 443 } });
    expect(parseAuthority('10.0.0.1:5432')).toMatchObject({ target: { host: '10.0.0.1', ip: { family: 4 }, port: 5432 } });
    expect(parseAuthority('[2001:DB8::1]:443')).toMatchObject({ target: { host: '2001:db8::1', ip: { family: 6 }, port: 443 } });
    expect(parseAuthority('[::ffff:10.0.0.1]:443')).toMatchObject({ target: { host: '10.0.0.1', ip: { family: 4 } } });
    expect(parseAuthority('example.com', 80)).toEqual({ target: { host: 'example.com', port: 80 } });
  });

  it.each([
    ['example.com', /port is required/],
    ['example.com:0', /not a port/],
    ['example.com:65536', /not a port/],
    ['example.com:+1', /not a port/],
    ['2001:db8::1:443', /brackets/],
    ['[2001:db8::1', /unterminated/],
    ['[1.2.3.4]:80', /only for IPv6/],
    ['2130706433:80', /numeric/],
    ['127.1:80', /numeric/],
    ['0x7f.0.0.1:80', /numeric|label/],
    ['exa mple.com:80', /label/],
    [':80', /empty/],
  ])('rejects %j', (text, message) => {
    const parsed = parseAuthority(text);
    expect('error' in parsed && parsed.error).toMatch(message);
  });

  it('formats targets with brackets for IPv6', () => {
    expect(formatTarget({ host: '::1', port: 443 })).toBe('[::1]:443');
    expect(formatTarget({ host: 'a.example', port: null })).toBe('a.example');
  });
});

describe('checkHostname', () => {
  it('normalises and validates', () => {
    expect(checkHostname('Compose_Service.local.')).toEqual({ host: 'compose_service.local' });
    expect(checkHostname('a'.repeat(64))).toHaveProperty('error');
    expect(checkHostname(`${'a.'.repeat(127)}ab`)).toHaveProperty('error');
    expect(checkHostname('-a.example')).toHaveProperty('error');
    expect(checkHostname('a..example')).toHaveProperty('error');
  });
});

describe('parseAbsoluteHttpUrl', () => {
  it('parses absolute http URLs', () => {
    expect(parseAbsoluteHttpUrl('http://Example.com/a/b?c=d#frag')).toEqual({ target: { host: 'example.com', port: 80 }, path: '/a/b?c=d' });
    expect(parseAbsoluteHttpUrl('HTTP://example.com:8080')).toEqual({ target: { host: 'example.com', port: 8080 }, path: '/' });
    expect(parseAbsoluteHttpUrl('http://example.com?x=1')).toEqual({ target: { host: 'example.com', port: 80 }, path: '/?x=1' });
    expect(parseAbsoluteHttpUrl('http://[::1]:81/')).toMatchObject({ target: { host: '::1', port: 81 } });
  });

  it('refuses origin-form, https, other schemes, userinfo and bad hosts', () => {
    expect(parseAbsoluteHttpUrl('/path')).toMatchObject({ reason: 'unsupported-request' });
    expect(parseAbsoluteHttpUrl('https://example.com/')).toMatchObject({ reason: 'unsupported-request', error: expect.stringContaining('CONNECT') });
    expect(parseAbsoluteHttpUrl('ftp://example.com/')).toMatchObject({ reason: 'unsupported-request' });
    expect(parseAbsoluteHttpUrl('http://allowed.example@evil.example/')).toMatchObject({ reason: 'malformed-request' });
    expect(parseAbsoluteHttpUrl('http://2130706433/')).toMatchObject({ reason: 'invalid-host' });
    expect(parseAbsoluteHttpUrl('example.com/')).toMatchObject({ reason: 'malformed-request' });
  });
});
