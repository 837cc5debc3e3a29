import { describe, expect, it } from 'vitest';
import { effectiveIsolation, parseIsolationClass, strongerIsolation } from './isolation-policy.js';

describe('isolation policy', () => {
  it('defaults to runc and honours the request', () => {
    expect(effectiveIsolation({ platformMinimum: 'runc' })).toBe('runc');
    expect(effectiveIsolation({ requested: 'gvisor', platformMinimum: 'runc' })).toBe('gvisor');
  });
  it('raises to the platform and tenant minimum, never lowers', () => {
    expect(effectiveIsolation({ requested: 'runc', platformMinimum: 'gvisor' })).toBe('gvisor');
    expect(effectiveIsolation({ requested: 'runc', platformMinimum: 'runc', tenantMinimum: 'gvisor' })).toBe('gvisor');
    expect(effectiveIsolation({ requested: 'gvisor', platformMinimum: 'runc', tenantMinimum: 'runc' })).toBe('gvisor');
    expect(strongerIsolation('runc', 'gvisor')).toBe('gvisor');
  });
  it('parses class names loudly', () => {
    expect(parseIsolationClass('gvisor', 'X')).toBe('gvisor');
    expect(() => parseIsolationClass('kata', 'AGENT_PLATFORM_MIN_ISOLATION')).toThrow(/AGENT_PLATFORM_MIN_ISOLATION.*kata/);
  });
});
