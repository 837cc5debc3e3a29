import { z } from 'zod';
import type { PlatformEvent } from '../../domain/event.js';
import type { Bus } from '../../bus/bus.js';
import type { Store } from '../../store/store.js';
import type { RouteRegistry } from '../route-registry.js';
import { EventList } from '../schemas/agent-schema.js';
import { toEventResponse } from '../agent-mapper.js';

const Since = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined) return undefined;
    const rel = /^([0-9]+)(s|m|h|d)$/.exec(v);
    if (rel) return Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's' | 'm' | 'h' | 'd'];
    const t = Date.parse(v);
    if (Number.isNaN(t)) {
      ctx.addIssue({ code: 'custom', message: 'must be an RFC 3339 time or a duration like "10m"' });
      return z.NEVER;
    }
    return t;
  })
  .meta({ description: 'RFC 3339 time or relative duration ("30s", "10m", "2h", "1d")' });

const EventsQuery = z.strictObject({
  agent: z.string().max(64).optional(),
  node: z.string().max(253).optional(),
  since: Since,
  limit: z.string().regex(/^[0-9]+$/, 'must be a whole number').transform(Number).pipe(z.number().int().min(1).max(5000)).optional(),
});

/** Platform events: a query endpoint and a live Server-Sent Events stream. */
export function registerEventRoutes(routes: RouteRegistry, d: { store: Store; bus: Bus; heartbeatMs?: number }): void {
  routes.add(
    { method: 'GET', url: '/api/v1/events', summary: 'Events (state changes, scheduling decisions, restarts, OOM kills, node conditions), oldest first', tags: ['events'], permission: 'events:read', query: EventsQuery, responses: { 200: EventList } },
    async ({ query, principal }) => {
      const items = await d.store.listEvents({
        tenantId: principal.role === 'platform-admin' && query.node ? undefined : principal.tenantId,
        objectKind: query.agent ? 'Agent' : query.node ? 'Node' : undefined,
        objectId: query.agent ?? query.node,
        sinceMs: query.since,
        limit: query.limit ?? 1000,
      });
      return { items: items.map(toEventResponse) };
    },
  );

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/events/stream',
      summary: 'Live events as Server-Sent Events; resumes after Last-Event-ID',
      tags: ['events'],
      permission: 'events:read',
      query: EventsQuery.omit({ limit: true }),
      responses: { 200: { description: 'text/event-stream of Event objects', contentType: 'text/event-stream' } },
    },
    async ({ query, principal, request, reply }) => {
      const visible = (e: PlatformEvent): boolean =>
        (e.tenantId === principal.tenantId || (principal.role === 'platform-admin' && e.objectKind === 'Node')) &&
        (query.agent === undefined || (e.objectKind === 'Agent' && e.objectId === query.agent)) &&
        (query.node === undefined || (e.objectKind === 'Node' && e.objectId === query.node));
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': request.id, 'x-accel-buffering': 'no' });
      const send = (e: PlatformEvent): void => {
        if (!visible(e)) return;
        res.write(`${e.id > 0 ? `id: ${e.id}\n` : ''}event: ${e.objectKind.toLowerCase()}\ndata: ${JSON.stringify(toEventResponse(e))}\n\n`);
      };
      // Subscribe before replaying so nothing falls between the two.
      const buffered: PlatformEvent[] = [];
      let replaying = true;
      const unsubscribe = d.bus.subscribe((e) => (replaying ? buffered.push(e) : send(e)));
      const lastId = Number(request.headers['last-event-id']);
      let maxReplayed = 0;
      if (Number.isInteger(lastId) && lastId > 0) {
        for (const e of await d.store.listEvents({ tenantId: principal.tenantId, afterId: lastId, limit: 5000 })) {
          send(e);
          maxReplayed = Math.max(maxReplayed, e.id);
        }
      } else if (query.since !== undefined) {
        for (const e of await d.store.listEvents({ tenantId: principal.tenantId, sinceMs: query.since, limit: 5000 })) {
          send(e);
          maxReplayed = Math.max(maxReplayed, e.id);
        }
      }
      replaying = false;
      for (const e of buffered) if (e.id === 0 || e.id > maxReplayed) send(e);
      res.write(': connected\n\n');
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), d.heartbeatMs ?? 15_000);
      // A hijacked response is invisible to Fastify: end it ourselves on shutdown, or
      // app.close() waits for this connection forever (the heartbeat keeps it busy).
      const cleanUp = (): void => {
        clearInterval(heartbeat);
        unsubscribe();
        routes.closing.removeEventListener('abort', endOnClose);
      };
      function endOnClose(): void {
        cleanUp();
        res.end();
      }
      if (routes.closing.aborted) endOnClose();
      else routes.closing.addEventListener('abort', endOnClose, { once: true });
      request.raw.on('close', cleanUp);
    },
  );
}
