import { describe, expect, it } from 'vitest';
import { ForbiddenError } from '../domain/errors.js';
import { PERMISSIONS, ROLES, hasPermission, mayGrant, requirePermission } from './roles.js';

describe('roles', () => {
  it('platform-admin has every permission; viewer only reads', () => {
    for (const p of PERMISSIONS) expect(hasPermission('platform-admin', p)).toBe(true);
    expect(PERMISSIONS.filter((p) => hasPermission('viewer', p))).toEqual(['agents:read', 'events:read', 'nodes:read', 'tenants:read']);
  });

  it('roles are ordered: each role has every permission of the roles below it', () => {
    for (let i = 0; i + 1 < ROLES.length; i++) {
      for (const p of PERMISSIONS) if (hasPermission(ROLES[i + 1]!, p)) expect(hasPermission(ROLES[i]!, p)).toBe(true);
    }
  });

  it('members write agents but do not manage keys; tenant admins do, but never tenants', () => {
    expect(hasPermission('member', 'agents:write')).toBe(true);
    expect(hasPermission('member', 'keys:write')).toBe(false);
    expect(hasPermission('tenant-admin', 'keys:write')).toBe(true);
    expect(hasPermission('tenant-admin', 'tenants:write')).toBe(false);
  });

  it('requirePermission names the missing permission and the role', () => {
    expect(() => requirePermission('viewer', 'agents:write')).toThrow(ForbiddenError);
    expect(() => requirePermission('viewer', 'agents:write')).toThrow('missing permission agents:write (role viewer)');
    expect(() => requirePermission('member', 'agents:write')).not.toThrow();
  });

  it('nobody grants above its own role', () => {
    expect(mayGrant('tenant-admin', 'platform-admin')).toBe(false);
    expect(mayGrant('tenant-admin', 'member')).toBe(true);
    expect(mayGrant('member', 'viewer')).toBe(false);
    expect(mayGrant('platform-admin', 'platform-admin')).toBe(true);
  });
});
