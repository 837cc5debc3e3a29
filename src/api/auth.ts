import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { UnauthenticatedError } from '../domain/errors.js';
import type { Store } from '../store/store.js';
import type { Principal } from '../services/agent-service.js';

export const ADMIN_TOKEN_SETTING = 'admin_token_sha256';
export const DEFAULT_TENANT = 'default';

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/**
 * Resolves bearer tokens to principals. Today: the bootstrap admin token. API keys
 * of tenants (with roles) slot in as further resolvers.
 */
export class Authenticator {
  private readonly resolvers: ((token: string) => Promise<Principal | undefined>)[] = [];

  constructor(private readonly adminTokenHash: string) {
    this.resolvers.push(async (token) => {
      const a = Buffer.from(sha256(token), 'hex');
      const b = Buffer.from(this.adminTokenHash, 'hex');
      return a.length === b.length && timingSafeEqual(a, b) ? { subject: 'admin', tenantId: DEFAULT_TENANT, role: 'platform-admin' } : undefined;
    });
  }

  addResolver(resolver: (token: string) => Promise<Principal | undefined>): void {
    this.resolvers.push(resolver);
  }

  readonly authenticate = async (request: FastifyRequest): Promise<Principal> => {
    const header = request.headers.authorization;
    if (!header) throw new UnauthenticatedError('missing Authorization header; send "Authorization: Bearer <token>"');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new UnauthenticatedError('Authorization header must be "Bearer <token>"');
    for (const resolve of this.resolvers) {
      const p = await resolve(m[1]!);
      if (p) return p;
    }
    throw new UnauthenticatedError('invalid or expired token');
  };
}

/**
 * The admin token: from the environment when set; otherwise generated at first start,
 * stored hashed and returned once (so the caller can print it) — later starts only
 * know the hash.
 */
export async function bootstrapAdminToken(store: Store, envToken: string | undefined): Promise<{ hash: string; generated?: string }> {
  if (envToken) return { hash: sha256(envToken) };
  const existing = await store.getSetting(ADMIN_TOKEN_SETTING);
  if (existing) return { hash: existing };
  const token = `ap_${randomBytes(24).toString('base64url')}`;
  const stored = await store.putSettingIfAbsent(ADMIN_TOKEN_SETTING, sha256(token));
  return stored === sha256(token) ? { hash: stored, generated: token } : { hash: stored };
}
