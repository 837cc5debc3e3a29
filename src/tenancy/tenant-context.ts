import type { FastifyRequest } from 'fastify';
import { DomainError, ForbiddenError } from '../domain/errors.js';
import type { Principal } from '../services/agent-service.js';
import type { Store } from '../store/store.js';
import { rememberPrincipal } from './audit-log.js';
import type { RateLimiter } from './rate-limiter.js';
import { tenantNotFound } from './tenant-service.js';

/** Header a platform admin sends to act in another tenant (default: the "default" tenant). */
export const TENANT_HEADER = 'x-tenant';

export interface TenantContextOptions {
  authenticate: (request: FastifyRequest) => Promise<Principal>;
  store: Store;
  /** Token buckets per API key; absent: no rate limits. */
  limiter?: RateLimiter | undefined;
  /**
   * Subjects never rate limited.
   * @default ['admin'] (the bootstrap token: the operator's way in when keys misbehave)
   */
  unlimitedSubjects?: readonly string[] | undefined;
}

/**
 * Wraps the Authenticator: rate-limits the principal's key (429 RATE_LIMITED with
 * retryAfterSeconds, sent as Retry-After), applies `X-Tenant` for platform admins (others
 * may only name their own tenant) and remembers the principal for the audit log.
 */
export function tenantAwareAuthenticate(o: TenantContextOptions): (request: FastifyRequest) => Promise<Principal> {
  const unlimited = new Set(o.unlimitedSubjects ?? ['admin']);
  return async (request) => {
    let principal = await o.authenticate(request);
    rememberPrincipal(request, principal);
    if (o.limiter && !unlimited.has(principal.subject)) {
      const d = await o.limiter.take(principal.subject);
      if (!d.allowed) {
        const retryAfterSeconds = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
        throw new DomainError('RATE_LIMITED', `rate limit of ${principal.subject} exceeded; retry in ${retryAfterSeconds}s`, { retryAfterSeconds, retryAfterMs: d.retryAfterMs });
      }
    }
    const raw = request.headers[TENANT_HEADER];
    const tenant = Array.isArray(raw) ? raw[0] : raw;
    if (tenant !== undefined && tenant !== principal.tenantId) {
      if (principal.role !== 'platform-admin') throw new ForbiddenError('X-Tenant may name another tenant only for platform admins', { header: 'X-Tenant' });
      if (!(await o.store.getTenant(tenant))) throw tenantNotFound(tenant);
      principal = { ...principal, tenantId: tenant };
      rememberPrincipal(request, principal);
    }
    return principal;
  };
}
