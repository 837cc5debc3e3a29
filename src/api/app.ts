import Fastify, { LogController, type FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swaggerUi from '@fastify/swagger-ui';
import { randomUUID } from 'node:crypto';
import type { Logger as PinoLogger } from 'pino';
import { NotFoundError } from '../domain/errors.js';
import { principalOf } from '../tenancy/audit-log.js';
import { handleError } from './error-handler.js';
import { RouteRegistry, type Authenticator } from './route-registry.js';

export interface AppOptions {
  logger: PinoLogger;
  bodyLimitBytes: number;
  authenticate: Authenticator;
  /**
   * Told about every response, by route pattern (`/api/v1/agents/:id`, never the raw URL, so
   * ids do not explode label cardinality; "unmatched" for 404s without a route).
   */
  observeRequest?: ((method: string, route: string, status: number, seconds: number) => void) | undefined;
}

/**
 * The Fastify instance with error mapping, request ids, OpenAPI at /openapi.json and
 * Swagger UI at /docs. Routes are added through the returned registry; call
 * `finish()` after the last one so the OpenAPI document includes them all.
 */
export async function createApp(opts: AppOptions): Promise<{ app: FastifyInstance; routes: RouteRegistry; finish: () => Promise<void> }> {
  const app = Fastify({
    loggerInstance: opts.logger,
    bodyLimit: opts.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    // One structured line per request comes from our onResponse hook instead.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    // The tenant the request acted in (after X-Tenant), when it authenticated at all.
    const principal = principalOf(request);
    const who = principal ? { tenant: principal.tenantId, subject: principal.subject } : {};
    request.log.info({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime), ...who }, 'request');
  });
  const observeRequest = opts.observeRequest;
  if (observeRequest) {
    app.addHook('onResponse', async (request, reply) => {
      observeRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    });
  }
  // The API speaks JSON only: without this, Fastify's built-in text/plain parser lets a
  // text body through to validation, which then reports a confusing type error instead
  // of 415 UNSUPPORTED_MEDIA_TYPE.
  app.removeContentTypeParser('text/plain');
  app.setErrorHandler(handleError);
  app.setNotFoundHandler(async (request) => {
    throw new NotFoundError('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}; see /openapi.json`);
  });
  const closing = new AbortController();
  // preClose runs before the server stops accepting: streams end first, so close()
  // does not wait on a `logs?follow=true` that would last as long as its container.
  app.addHook('preClose', async () => {
    closing.abort();
  });
  const routes = new RouteRegistry(app, opts.authenticate, closing.signal);

  const finish = async (): Promise<void> => {
    const doc = routes.openapi({ title: 'agent-platform', version: '1' });
    app.get('/openapi.json', async () => doc);
    // @fastify/swagger-ui reads the document from a `swagger()` decorator that
    // @fastify/swagger would add; we already have the document, so provide it directly.
    await app.register(fp(async (f) => void f.decorate('swagger', () => doc), { name: '@fastify/swagger' }));
    await app.register(swaggerUi, { routePrefix: '/docs' });
  };
  return { app, routes, finish };
}
