import { ForbiddenError } from '../domain/errors.js';
import type { Role } from '../store/store.js';

/**
 * Permissions checked by the route registry (every authenticated route names one). Pure:
 * the matrix below is the whole access policy; tenant scoping (another tenant's objects
 * are 404) is done by the services on top of it.
 */
export const PERMISSIONS = [
  'agents:read',
  'agents:write',
  'events:read',
  'nodes:read',
  'quota:read',
  'usage:read',
  'keys:read',
  'keys:write',
  'audit:read',
  'tenants:read',
  'tenants:write',
  'platform:admin',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLES: readonly Role[] = ['platform-admin', 'tenant-admin', 'member', 'viewer'];

const VIEWER: readonly Permission[] = ['agents:read', 'events:read', 'nodes:read', 'tenants:read'];
const MEMBER: readonly Permission[] = [...VIEWER, 'agents:write'];
const TENANT_ADMIN: readonly Permission[] = [...MEMBER, 'quota:read', 'usage:read', 'keys:read', 'keys:write', 'audit:read'];

/** The permission matrix. platform-admin has every permission, for every tenant. */
export const ROLE_PERMISSIONS: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  'platform-admin': new Set(PERMISSIONS),
  'tenant-admin': new Set(TENANT_ADMIN),
  member: new Set(MEMBER),
  viewer: new Set(VIEWER),
};

export const hasPermission = (role: Role, permission: Permission): boolean => ROLE_PERMISSIONS[role]?.has(permission) ?? false;

/** Throws ForbiddenError(FORBIDDEN) "missing permission agents:write (role viewer)". */
export function requirePermission(role: Role, permission: Permission): void {
  if (!hasPermission(role, permission)) {
    throw new ForbiddenError(`missing permission ${permission} (role ${role})`, { permission, role });
  }
}

/** Whether a principal of role `granter` may create a key with role `granted` (never above its own). */
export function mayGrant(granter: Role, granted: Role): boolean {
  if (granter === 'platform-admin') return true;
  if (granter === 'tenant-admin') return granted !== 'platform-admin';
  return false;
}
