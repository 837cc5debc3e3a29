import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { InputError } from '../domain/errors.js';
import type { Principal } from '../services/agent-service.js';
import { ErrorResponse } from './schemas/common-schema.js';
import { requirePermission, type Permission } from '../tenancy/roles.js';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteDef<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: Method;
  /** Fastify path syntax: /api/v1/agents/:id */
  url: string;
  summary: string;
  tags: string[];
  /** Default true: needs a bearer token. */
  auth?: boolean;
  /**
   * What the caller's role must allow (src/tenancy/roles.ts); checked centrally before
   * the handler: 403 FORBIDDEN "missing permission agents:write (role viewer)". An
   * authenticated route without one is for platform admins only ("platform:admin").
   */
  permission?: Permission;
  /**
   * Runs after the path parameters are parsed and before query and body are: a route
   * scoped to an object (a tenant) refuses another tenant's one with 404 here, so
   * validation errors cannot tell a caller anything about objects it may not see.
   */
  scope?: (principal: Principal, params: z.output<P>) => Promise<unknown>;
  params?: P;
  query?: Q;
  body?: B;
  /** Status -> schema (or a description for non-JSON bodies). */
  responses: Record<number, z.ZodType | { description: string; contentType: string }>;
  extraHeaders?: { name: string; description: string }[];
}

export interface HandlerInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  principal: Principal;
  request: FastifyRequest;
  reply: FastifyReply;
}

export type Authenticator = (request: FastifyRequest) => Promise<Principal>;

/** Parses with a zod schema; failures become one InputError naming every bad field. */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown, where: string): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    // A problem with the whole body (say, an array instead of an object) is named "body".
    const path = [where, ...i.path.map(String)].filter(Boolean).join('.') || 'body';
    if (i.code === 'unrecognized_keys') return { field: path || where, message: `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}` };
    return { field: path || where, message: i.message };
  });
  const message = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
  throw new InputError(message, { fields: problems });
}

/**
 * Registers Fastify routes and remembers them for the OpenAPI document, so the zod
 * schemas are the one source of validation, types and documentation.
 */
export class RouteRegistry {
  private readonly defs: RouteDef<z.ZodType, z.ZodType, z.ZodType>[] = [];

  /**
   * @param closing aborted when the server starts to close: long-lived responses (log
   * follow) listen to it and end, or `app.close()` would wait for them forever.
   */
  constructor(
    private readonly app: FastifyInstance,
    private readonly authenticate: Authenticator,
    readonly closing: AbortSignal = new AbortController().signal,
  ) {}

  add<P extends z.ZodType = z.ZodUnknown, Q extends z.ZodType = z.ZodUnknown, B extends z.ZodType = z.ZodUnknown>(
    def: RouteDef<P, Q, B>,
    handler: (input: HandlerInput<z.output<P>, z.output<Q>, z.output<B>>) => Promise<unknown>,
  ): void {
    this.defs.push(def as unknown as RouteDef<z.ZodType, z.ZodType, z.ZodType>);
    this.app.route({
      method: def.method,
      url: def.url,
      handler: async (request, reply) => {
        const principal = def.auth === false ? anonymous : await this.authenticate(request);
        if (def.auth !== false) requirePermission(principal.role, def.permission ?? 'platform:admin');
        const params = def.params ? parseInput(def.params, request.params, 'path') : (request.params as z.output<P>);
        if (def.scope) await def.scope(principal, params);
        const query = def.query ? parseInput(def.query, request.query ?? {}, 'query') : (request.query as z.output<Q>);
        let body = request.body as z.output<B>;
        if (def.body) {
          if (request.body === undefined || request.body === null) throw new InputError('request body is required (JSON)', { field: 'body' }, 'BODY_REQUIRED');
          body = parseInput(def.body, request.body, '');
        }
        return handler({ params, query, body, principal, request, reply });
      },
    });
  }

  openapi(info: { title: string; version: string }): Record<string, unknown> {
    const registry = z.registry<{ id?: string }>();
    void registry;
    const schemas: Record<string, unknown> = {};
    const toSchema = (s: z.ZodType, io: 'input' | 'output'): unknown => {
      const js = z.toJSONSchema(s, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Record<string, unknown>;
      const defs = (js.$defs ?? {}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(defs)) schemas[k] = rewriteRefs(v);
      delete js.$defs;
      delete js.$schema;
      return rewriteRefs(js);
    };
    const paths: Record<string, Record<string, unknown>> = {};
    for (const def of this.defs) {
      const path = def.url.replace(/:([A-Za-z]+)/g, '{$1}');
      const parameters: unknown[] = [];
      for (const [where, schema] of [
        ['path', def.params],
        ['query', def.query],
      ] as const) {
        if (!schema) continue;
        const js = toSchema(schema, 'input') as { properties?: Record<string, unknown>; required?: string[] };
        for (const [name, s] of Object.entries(js.properties ?? {})) {
          parameters.push({ name, in: where, required: where === 'path' || (js.required ?? []).includes(name), schema: s });
        }
      }
      for (const h of def.extraHeaders ?? []) parameters.push({ name: h.name, in: 'header', required: false, description: h.description, schema: { type: 'string' } });
      const responses: Record<string, unknown> = {};
      for (const [status, r] of Object.entries(def.responses)) {
        if (r instanceof z.ZodType) responses[status] = { description: statusText(Number(status)), content: { 'application/json': { schema: toSchema(r, 'output') } } };
        else responses[status] = { description: r.description, content: { [r.contentType]: { schema: { type: 'string' } } } };
      }
      responses.default = { description: 'Error', content: { 'application/json': { schema: toSchema(ErrorResponse, 'output') } } };
      (paths[path] ??= {})[def.method.toLowerCase()] = {
        summary: def.summary,
        tags: def.tags,
        ...(def.auth !== false ? { 'x-permission': def.permission ?? 'platform:admin' } : {}),
        ...(def.auth === false ? { security: [] } : {}),
        ...(parameters.length ? { parameters } : {}),
        ...(def.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(def.body, 'input') } } } } : {}),
        responses,
      };
    }
    return {
      openapi: '3.1.0',
      info,
      servers: [{ url: '/' }],
      security: [{ bearerAuth: [] }],
      paths,
      components: { schemas, securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
    };
  }
}

const anonymous: Principal = { subject: 'anonymous', tenantId: '', role: 'viewer' };

function rewriteRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      out[k] = k === '$ref' && typeof v === 'string' ? v.replace('#/$defs/', '#/components/schemas/') : rewriteRefs(v);
    }
    return out;
  }
  return node;
}

function statusText(status: number): string {
  return ({ 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content' } as Record<number, string>)[status] ?? String(status);
}
