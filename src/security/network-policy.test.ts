import { describe, expect, it } from 'vitest';
import { admitNetworkPolicy } from './network-policy.js';
import { mergeNetworkPolicy } from './agent-network-patch.js';

describe('admitNetworkPolicy', () => {
  it('defaults to none and normalises allowlists', () => {
    expect(admitNetworkPolicy(undefined, { role: 'member' })).toEqual({ mode: 'none' });
    expect(admitNetworkPolicy({ mode: 'allowlist', allow: [' api.openai.com:443', 'api.openai.com:443', '*.pypi.org'] }, { role: 'member' })).toEqual({
      mode: 'allowlist',
      allow: ['api.openai.com:443', '*.pypi.org'],
    });
  });
  it('gives open to platform admins only', () => {
    expect(admitNetworkPolicy({ mode: 'open' }, { role: 'platform-admin' })).toEqual({ mode: 'open' });
    expect(() => admitNetworkPolicy({ mode: 'open' }, { role: 'tenant-admin' })).toThrow(expect.objectContaining({ code: 'NETWORK_OPEN_FORBIDDEN' }));
  });
  it('rejects bad rules and empty lists', () => {
    expect(() => admitNetworkPolicy({ mode: 'allowlist', allow: ['http://x'] }, { role: 'member' })).toThrow(expect.objectContaining({ code: 'INVALID_EGRESS_RULE' }));
    expect(() => admitNetworkPolicy({ mode: 'allowlist', allow: [] }, { role: 'member' })).toThrow(/at least one rule/);
  });
});

describe('mergeNetworkPolicy (JSON merge patch)', () => {
  const current = { mode: 'allowlist' as const, allow: ['a.example:443'] };
  it('replaces the list, keeps the mode, and null means none', () => {
    expect(mergeNetworkPolicy(current, { allow: ['b.example:443'] })).toEqual({ mode: 'allowlist', allow: ['b.example:443'] });
    expect(mergeNetworkPolicy(current, undefined)).toBe(current);
    expect(mergeNetworkPolicy(current, null)).toEqual({ mode: 'none' });
    expect(mergeNetworkPolicy({ mode: 'none' }, { mode: 'allowlist', allow: ['x.example'] })).toEqual({ mode: 'allowlist', allow: ['x.example'] });
    expect(() => mergeNetworkPolicy({ mode: 'none' }, { allow: ['x.example'] })).toThrow(/only for mode "allowlist"/);
  });
});
