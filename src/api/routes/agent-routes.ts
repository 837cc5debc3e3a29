import { Readable } from 'node:stream';
import { z } from 'zod';
import { DomainError, InputError, UnavailableError } from '../../domain/errors.js';
import type { AgentService } from '../../services/agent-service.js';
import type { Store } from '../../store/store.js';
import type { RuntimeRegistry } from '../../runtime/runtime-registry.js';
import { containerName, type LogLine } from '../../runtime/runtime.js';
import type { RouteRegistry } from '../route-registry.js';
import { AgentList, AgentResponse, CreateAgentRequest, EventList, ListAgentsQuery, LogsQuery } from '../schemas/agent-schema.js';
import { Id } from '../schemas/common-schema.js';
import { toAgentResponse, toEventResponse } from '../agent-mapper.js';
import type { AgentUsage } from '../../metrics/usage-sampler.js';
import { linkSignals } from '../../domain/linked-signal.js';
import { watchStreamKey, type StreamKeyWatchOptions } from '../../tenancy/stream-key-watch.js';

const IdParams = z.strictObject({ id: Id });
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export interface AgentRouteDeps {
  agents: AgentService;
  store: Store;
  runtimes: RuntimeRegistry;
  /** How long DELETE waits for the container and record to be gone before answering 202. */
  deleteWaitMs: number;
  /** Latest sampled usage of a running agent (UsageSampler.latest); GET shows it as `usage`. */
  usage?: ((agentId: string) => AgentUsage | undefined) | undefined;
  /** Re-checks the caller's key while `logs?follow=true` streams; absent: checked at the start only. */
  keyWatch?: StreamKeyWatchOptions | undefined;
}

export function registerAgentRoutes(routes: RouteRegistry, d: AgentRouteDeps): void {
  routes.add(
    {
      method: 'POST',
      url: '/api/v1/agents',
      summary: 'Create an agent',
      tags: ['agents'],
      permission: 'agents:write',
      body: CreateAgentRequest,
      responses: { 201: AgentResponse, 200: AgentResponse },
      extraHeaders: [{ name: 'Idempotency-Key', description: 'The same key returns the same agent; never a second container' }],
    },
    async ({ body, principal, request, reply }) => {
      const keyHeader = request.headers['idempotency-key'];
      const key = Array.isArray(keyHeader) ? keyHeader[0] : keyHeader;
      if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
        throw new InputError('Idempotency-Key must be 1-255 printable ASCII characters without spaces', { field: 'Idempotency-Key' });
      }
      // The client going away ends a backpressure wait (create-backpressure.ts) with nothing created.
      const clientGone = (): AbortSignal => {
        const gone = new AbortController();
        if (reply.raw.destroyed) gone.abort();
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) gone.abort();
        });
        return gone.signal;
      };
      const { agent, created } = await d.agents.create(principal, body, key, request.body, clientGone).catch((err: unknown) => {
        // Held until shutdown: close the connection with the answer, or the server's close
        // waits for this keep-alive connection (72 s) after the response went out.
        if (err instanceof DomainError && err.code === 'SHUTTING_DOWN') void reply.header('connection', 'close');
        throw err;
      });
      if (!created) void reply.header('idempotent-replayed', 'true');
      void reply.status(created ? 201 : 200).header('location', `/api/v1/agents/${agent.id}`);
      return toAgentResponse(agent);
    },
  );

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/agents',
      summary: 'List agents (filter by phase, label, name; paginated)',
      tags: ['agents'],
      permission: 'agents:read',
      query: ListAgentsQuery.extend({ name: z.string().max(63).optional() }),
      responses: { 200: AgentList },
    },
    async ({ query, principal }) => {
      const page = await d.agents.list(principal, { phase: query.phase, labels: query.label, limit: query.limit, cursor: query.cursor, name: query.name });
      return { items: page.items.map(toAgentResponse), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
    },
  );

  routes.add(
    { method: 'GET', url: '/api/v1/agents/:id', summary: 'Get an agent', tags: ['agents'], permission: 'agents:read', params: IdParams, responses: { 200: AgentResponse } },
    async ({ params, principal }) => {
      const agent = toAgentResponse(await d.agents.get(principal, params.id));
      const usage = d.usage?.(agent.id);
      return usage ? { ...agent, usage: { ...usage, sampledAt: new Date(usage.sampledAt).toISOString() } } : agent;
    },
  );

  routes.add(
    {
      method: 'DELETE',
      url: '/api/v1/agents/:id',
      summary: 'Delete an agent from any phase: removes its container, then its record',
      tags: ['agents'],
      permission: 'agents:write',
      params: IdParams,
      responses: { 200: z.object({ id: z.string(), deleted: z.literal(true) }), 202: AgentResponse },
    },
    async ({ params, principal, reply }) => {
      const hungUp = new AbortController();
      // The response's close before it was written means the client went away.
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) hungUp.abort();
      });
      const wait = linkSignals(routes.closing, hungUp.signal);
      let result;
      try {
        result = await d.agents.delete(principal, params.id, d.deleteWaitMs, wait.signal);
      } finally {
        wait.dispose();
      }
      if (result.gone) return { id: params.id, deleted: true as const };
      void reply.status(202);
      return toAgentResponse(result.agent!);
    },
  );

  for (const action of ['stop', 'start'] as const) {
    routes.add(
      {
        method: 'POST',
        url: `/api/v1/agents/:id/${action}`,
        summary: action === 'stop' ? 'Stop an agent (SIGTERM, then SIGKILL after the grace period)' : 'Start a stopped or finished agent again',
        tags: ['agents'],
        permission: 'agents:write',
        params: IdParams,
        responses: { 200: AgentResponse },
      },
      async ({ params, principal }) => toAgentResponse(await d.agents.setDesired(principal, params.id, action === 'stop' ? 'stopped' : 'running')),
    );
  }

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/agents/:id/events',
      summary: 'Events of an agent, oldest first',
      tags: ['agents'],
      permission: 'agents:read',
      params: IdParams,
      responses: { 200: EventList },
    },
    async ({ params, principal }) => {
      const agent = await d.agents.get(principal, params.id);
      const items = await d.store.listEvents({ tenantId: agent.tenantId, objectKind: 'Agent', objectId: agent.id, limit: 1000 });
      return { items: items.map(toEventResponse) };
    },
  );

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/agents/:id/logs',
      summary: 'Logs (stdout and stderr) of an agent; follow=true streams until the container ends',
      tags: ['agents'],
      permission: 'agents:read',
      params: IdParams,
      query: LogsQuery,
      responses: { 200: { description: 'Log lines', contentType: 'text/plain' } },
    },
    async ({ params, query, principal, request, reply }) => {
      const agent = await d.agents.get(principal, params.id);
      void reply.header('content-type', 'text/plain; charset=utf-8');
      const runtime = agent.status.node ? d.runtimes.get(agent.status.node) : undefined;
      if (!agent.status.node) return '';
      if (!runtime) throw new UnavailableError('NODE_UNAVAILABLE', `node ${agent.status.node} of agent ${agent.id} is not reachable; logs are unavailable`);
      const disconnected = new AbortController();
      request.raw.on('close', () => disconnected.abort());
      // A follow stream outlives the request's authentication: a key revoked or expired
      // meanwhile ends it (the client's reconnect then gets the 401).
      const keyInvalid = new AbortController();
      if (query.follow && d.keyWatch) watchStreamKey(principal, d.keyWatch, disconnected.signal, (err) => keyInvalid.abort(err));
      // Ends when the client goes away, the server shuts down or the key stops being valid.
      // Every request closes, and the close unhooks the link from the server's long-lived
      // signal (linked-signal.ts).
      const signal = linkSignals(disconnected.signal, routes.closing, keyInvalid.signal).signal;
      const containerId = agent.status.containerId ?? containerName(agent.id);
      // No container (the image was missing, or it is being recreated): no logs yet,
      // like an agent that has no node. Checked up front because once a follow stream
      // is handed to Fastify an error can no longer become a proper response.
      if ((await runtime.inspect(containerId, signal)) === undefined) return '';
      const lines = runtime.logs(containerId, { tail: query.tail, sinceMs: query.since, follow: query.follow }, signal);
      const format = (l: LogLine): string => (query.timestamps ? `${new Date(l.time).toISOString()} ${l.text}\n` : `${l.text}\n`);
      if (!query.follow) {
        let out = '';
        for await (const l of lines) out += format(l);
        return out;
      }
      async function* stream(): AsyncGenerator<string> {
        try {
          for await (const l of lines) yield format(l);
        } catch (err) {
          if (!signal.aborted) throw err;
        }
      }
      return reply.send(Readable.from(stream()));
    },
  );
}
