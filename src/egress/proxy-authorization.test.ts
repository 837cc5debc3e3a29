import { describe, expect, it } from 'vitest';
import { parseProxyAuthorization } from './proxy-authorization.js';

const basic = (text: string): string => `Basic ${Buffer.from(text, 'utf8').toString('base64')}`;

describe('parseProxyAuthorization', () => {
  it('reads user and password, splitting at the first ":" only', () => {
    expect(parseProxyAuthorization(basic('agent1:tok:en'))).toEqual({ kind: 'basic', credentials: { username: 'agent1', password: 'tok:en' } });
    expect(parseProxyAuthorization(`basic ${Buffer.from('a:b').toString('base64')}`)).toEqual({ kind: 'basic', credentials: { username: 'a', password: 'b' } });
    expect(parseProxyAuthorization(basic('a:'))).toEqual({ kind: 'basic', credentials: { username: 'a', password: '' } });
  });

  it('tells a missing header from a malformed one, without echoing the value', () => {
    expect(parseProxyAuthorization(undefined)).toEqual({ kind: 'missing' });
    expect(parseProxyAuthorization([])).toEqual({ kind: 'missing' });
    expect(parseProxyAuthorization([basic('a:b'), basic('c:d')])).toMatchObject({ kind: 'malformed', detail: expect.stringMatching(/more than one/) });
    const bearer = parseProxyAuthorization('Bearer sekrit-token-value');
    expect(bearer).toMatchObject({ kind: 'malformed', detail: expect.stringMatching(/not "Basic <base64>"/) });
    expect(JSON.stringify(bearer)).not.toContain('sekrit');
    const digest = parseProxyAuthorization('Digest c2VrcmV0');
    expect(digest).toMatchObject({ kind: 'malformed', detail: expect.stringMatching(/scheme "Digest" is not supported/) });
    expect(parseProxyAuthorization('Basic !!!')).toMatchObject({ kind: 'malformed' });
    expect(parseProxyAuthorization(basic('no-colon-here'))).toMatchObject({ kind: 'malformed', detail: expect.stringMatching(/no ":"/) });
    expect(parseProxyAuthorization(basic(`a:${'x'.repeat(2000)}`))).toMatchObject({ kind: 'malformed', detail: expect.stringMatching(/longer than 1024/) });
  });
});
