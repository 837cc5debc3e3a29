import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EgressCredentials } from './egress-credentials.js';
import { SecretCipher } from './secret-cipher.js';

const agent = { id: 'a1b2c3d4e5', tenantId: 'acme' };

describe('EgressCredentials', () => {
  it('derives the same URL-safe token on every replica from the same secret key, and verifies it', () => {
    const key = randomBytes(32);
    const one = EgressCredentials.fromCipher(new SecretCipher(key));
    const two = EgressCredentials.fromCipher(new SecretCipher(Buffer.from(key)));
    const token = one.tokenFor(agent);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(two.tokenFor(agent)).toBe(token);
    expect(two.verify(agent, token)).toBe(true);
  });

  it('refuses the token for another agent, another tenant, another key, or a changed or cut token', () => {
    const creds = EgressCredentials.fromCipher(new SecretCipher(randomBytes(32)));
    const token = creds.tokenFor(agent);
    expect(creds.verify({ id: 'zzzzzzzzzz', tenantId: 'acme' }, token)).toBe(false);
    expect(creds.verify({ id: agent.id, tenantId: 'other' }, token)).toBe(false);
    expect(EgressCredentials.fromCipher(new SecretCipher(randomBytes(32))).verify(agent, token)).toBe(false);
    expect(creds.verify(agent, token.slice(0, -1))).toBe(false);
    expect(creds.verify(agent, `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).toBe(false);
    expect(creds.verify(agent, '')).toBe(false);
    // "a\nb" + "c" and "a" + "b\nc" must not collide.
    expect(creds.tokenFor({ id: 'c', tenantId: 'a\nb' })).not.toBe(creds.tokenFor({ id: 'b\nc', tenantId: 'a' }));
  });

  it('is not the secret key itself, nor an HMAC under it (a distinct derivation label)', () => {
    const key = randomBytes(32);
    const creds = EgressCredentials.fromCipher(new SecretCipher(key));
    expect(new EgressCredentials([key]).tokenFor(agent)).not.toBe(creds.tokenFor(agent));
  });

  it('keeps tokens issued before a key rotation valid while the old key is in the ring', () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const before = EgressCredentials.fromCipher(new SecretCipher(oldKey)).tokenFor(agent);
    const rotated = EgressCredentials.fromCipher(new SecretCipher(newKey, [oldKey]));
    expect(rotated.verify(agent, before)).toBe(true);
    expect(rotated.tokenFor(agent)).not.toBe(before);
    expect(EgressCredentials.fromCipher(new SecretCipher(newKey)).verify(agent, before)).toBe(false);
  });

  it('puts the agent id and token into the proxy URL as userinfo', () => {
    const creds = EgressCredentials.fromCipher(new SecretCipher(randomBytes(32)));
    const url = creds.proxyUrlFor('http://10.96.12.7:3128', agent);
    expect(url).toBe(`http://${agent.id}:${creds.tokenFor(agent)}@10.96.12.7:3128`);
    const parsed = new URL(url);
    expect([parsed.username, parsed.password, parsed.host]).toEqual([agent.id, creds.tokenFor(agent), '10.96.12.7:3128']);
    expect(creds.proxyUrlFor('http://[fd00::7]:3128', agent)).toBe(`http://${agent.id}:${creds.tokenFor(agent)}@[fd00::7]:3128`);
  });
});
