import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../domain/clock.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Principal } from '../services/agent-service.js';
import type { AuditRecord, Store } from '../store/store.js';

const principals = new WeakMap<FastifyRequest, Principal>();

/** Remembers who made a request (set by the authenticating wrapper), for the audit hook. */
export function rememberPrincipal(request: FastifyRequest, principal: Principal): void {
  principals.set(request, principal);
}

export function principalOf(request: FastifyRequest): Principal | undefined {
  return principals.get(request);
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The object a mutating request acted on: a key id, an agent or tenant id, or the created one. */
function targetOf(request: FastifyRequest, reply: FastifyReply): string | undefined {
  const params = (request.params ?? {}) as Record<string, unknown>;
  if (typeof params.keyId === 'string') return params.keyId;
  if (typeof params.id === 'string') return params.id;
  const location = reply.getHeader('location');
  if (typeof location === 'string') return location.split('/').pop() || undefined;
  return undefined;
}

/**
 * The audit log: one record per mutating request (who, tenant, method, route, target,
 * status, time, request id), whatever its result — refusals (401, 403, 429) included.
 */
export class AuditLog {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly logger: Logger = silentLogger,
  ) {}

  /**
   * Fastify onSend hook: the record is written before the response leaves, so a client
   * that reads the audit log right after its request finds it. A failed write is logged,
   * never fails the request.
   */
  readonly onSend = async <T>(request: FastifyRequest, reply: FastifyReply, payload: T): Promise<T> => {
    await this.record(request, reply);
    return payload;
  };

  private async record(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (READ_METHODS.has(request.method)) return;
    const route = request.routeOptions.url;
    if (route === undefined) return;
    const p = principalOf(request);
    const record: AuditRecord = {
      time: this.clock.now(),
      requestId: String(request.id),
      subject: p?.subject ?? 'anonymous',
      role: p?.role ?? 'none',
      tenantId: p?.tenantId ?? '',
      method: request.method,
      route,
      targetId: targetOf(request, reply),
      status: reply.statusCode,
    };
    try {
      await this.store.appendAudit(record);
    } catch (err) {
      this.logger.warn({ err, requestId: request.id }, 'audit record could not be written');
    }
  }

  /** Platform admins see every tenant (or the one asked for); others their own only. */
  list(principal: Principal, filter: { tenantId?: string | undefined; sinceMs?: number | undefined; beforeId?: number | undefined; limit?: number | undefined }): Promise<AuditRecord[]> {
    const tenantId = principal.role === 'platform-admin' ? filter.tenantId : principal.tenantId;
    return this.store.listAudit({ ...filter, tenantId });
  }
}
