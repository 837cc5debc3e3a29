import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import {
  ConflictError,
  DomainError,
  ForbiddenError,
  InputError,
  NotFoundError,
  UnauthenticatedError,
  UnavailableError,
} from '../domain/errors.js';

/** The one place where domain errors become HTTP statuses. */
export function statusFor(err: DomainError): number {
  if (err instanceof InputError) return err.code === 'VALIDATION_FAILED' || err.code === 'BODY_REQUIRED' ? 400 : 422;
  if (err instanceof UnauthenticatedError) return 401;
  if (err instanceof ForbiddenError) return 403;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof ConflictError) return 409;
  if (err instanceof UnavailableError) return 503;
  const byCode: Record<string, number> = { RATE_LIMITED: 429, PAYLOAD_TOO_LARGE: 413, UNSUPPORTED_MEDIA_TYPE: 415 };
  if (byCode[err.code] !== undefined) return byCode[err.code]!;
  // A node's runtime (Docker daemon, Kubernetes API) answered with an error: not the
  // caller's mistake, so a gateway error rather than a 4xx.
  if (err.code === 'RUNTIME_ERROR' || err.code.startsWith('KUBERNETES_')) return 502;
  return 400;
}

/** Fastify's own errors for malformed requests, translated to stable codes. */
const FASTIFY_CODES: Record<string, { status: number; code: string; message: (e: FastifyError) => string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'INVALID_JSON', message: (e) => `request body is not valid JSON: ${e.message}` },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'INVALID_JSON', message: () => 'request body is empty but content-type is application/json; send a JSON object' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'PAYLOAD_TOO_LARGE', message: () => 'request body is too large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: (e) => `${e.message}; send content-type: application/json` },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'INVALID_CONTENT_LENGTH', message: () => 'content-length does not match the body' },
  FST_ERR_BAD_URL: { status: 400, code: 'BAD_URL', message: (e) => e.message },
};

export function errorBody(code: string, message: string, details: unknown, requestId: string): object {
  return { error: { code, message, ...(details !== undefined ? { details } : {}), requestId } };
}

export async function handleError(err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  // A route may already have set another type (logs set text/plain before streaming);
  // the error body is always JSON, and Fastify refuses to send an object as text.
  void reply.type('application/json; charset=utf-8');
  if (err instanceof DomainError) {
    const status = statusFor(err);
    if (status >= 500) request.log.warn({ err }, err.message);
    if (err.code === 'RATE_LIMITED' && typeof (err.details as { retryAfterSeconds?: number })?.retryAfterSeconds === 'number') {
      void reply.header('retry-after', String((err.details as { retryAfterSeconds: number }).retryAfterSeconds));
    }
    await reply.status(status).send(errorBody(err.code, err.message, err.details, request.id));
    return;
  }
  const fe = err as FastifyError;
  const known = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (known) {
    await reply.status(known.status).send(errorBody(known.code, known.message(fe), undefined, request.id));
    return;
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    await reply.status(fe.statusCode).send(errorBody(fe.code ?? 'BAD_REQUEST', fe.message, undefined, request.id));
    return;
  }
  request.log.error({ err }, 'unhandled error');
  await reply.status(500).send(errorBody('INTERNAL', 'internal error; the request id identifies it in the platform logs', undefined, request.id));
}
