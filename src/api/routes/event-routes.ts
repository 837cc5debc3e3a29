import { z } from 'zod';
import type { PlatformEvent } from '../../domain/event.js';
import type { Bus } from '../../bus/bus.js';
import type { EventFilter, Store } from '../../store/store.js';
import { NODE_EVENT_TENANT } from '../../nodes/node-events.js';
import type { RouteRegistry } from '../route-registry.js';
import { EventList } from '../schemas/agent-schema.js';
import { toEventResponse } from '../agent-mapper.js';
import { errorBody } from '../error-handler.js';
import { watchStreamKey, type StreamKeyWatchOptions } from '../../tenancy/stream-key-watch.js';

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

const REPLAY_PAGE = 1000;

type Caller = { tenantId: string; role: string };

/**
 * The store queries whose union is what a caller may see, narrowed by the query: a tenant
 * sees its own events; a platform admin also sees node events (they belong to no tenant).
 */
function filtersFor(principal: Caller, query: { agent?: string | undefined; node?: string | undefined }): EventFilter[] {
  const admin = principal.role === 'platform-admin';
  if (query.agent !== undefined) return [{ tenantId: principal.tenantId, objectKind: 'Agent', objectId: query.agent }];
  if (query.node !== undefined) return admin ? [{ tenantId: NODE_EVENT_TENANT, objectKind: 'Node', objectId: query.node }] : [];
  const own: EventFilter = { tenantId: principal.tenantId };
  return admin && principal.tenantId !== NODE_EVENT_TENANT ? [own, { tenantId: NODE_EVENT_TENANT, objectKind: 'Node' }] : [own];
}

/** Runs the queries and merges them oldest first (by id), keeping `limit`. */
async function listVisible(store: Store, filters: EventFilter[], extra: Pick<EventFilter, 'sinceMs' | 'afterId'> & { limit: number }): Promise<PlatformEvent[]> {
  const lists = await Promise.all(filters.map((f) => store.listEvents({ ...f, ...extra })));
  if (lists.length === 1) return lists[0]!;
  return lists
    .flat()
    .sort((a, b) => a.id - b.id)
    .slice(0, extra.limit);
}

/** Platform events: a query endpoint and a live Server-Sent Events stream. */
export function registerEventRoutes(
  routes: RouteRegistry,
  d: {
    store: Store;
    bus: Bus;
    heartbeatMs?: number;
    /** Re-checks the caller's key while a stream is open; absent: checked at the start only. */
    keyWatch?: StreamKeyWatchOptions | undefined;
  },
): void {
  routes.add(
    { method: 'GET', url: '/api/v1/events', summary: 'Events (state changes, scheduling decisions, restarts, OOM kills, node conditions), oldest first', tags: ['events'], permission: 'events:read', query: EventsQuery, responses: { 200: EventList } },
    async ({ query, principal }) => {
      const items = await listVisible(d.store, filtersFor(principal, query), { sinceMs: query.since, limit: query.limit ?? 1000 });
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
      let heartbeat: NodeJS.Timeout | undefined;
      let closed = false;
      const watching = new AbortController();
      const send = (e: PlatformEvent): void => {
        if (closed || !visible(e)) return;
        res.write(`${e.id > 0 ? `id: ${e.id}\n` : ''}event: ${e.objectKind.toLowerCase()}\ndata: ${JSON.stringify(toEventResponse(e))}\n\n`);
      };
      // Subscribe before replaying so nothing falls between the two.
      const buffered: PlatformEvent[] = [];
      let replaying = true;
      const unsubscribe = d.bus.subscribe((e) => (replaying ? buffered.push(e) : send(e)));
      // Registered before the replay: a client gone during it must not leave the
      // subscription (and the heartbeat) behind.
      const cleanUp = (): void => {
        closed = true;
        clearInterval(heartbeat);
        watching.abort();
        unsubscribe();
        routes.closing.removeEventListener('abort', endOnClose);
      };
      // A hijacked response is invisible to Fastify: end it ourselves on shutdown, or
      // app.close() waits for this connection forever (the heartbeat keeps it busy).
      function endOnClose(): void {
        cleanUp();
        res.end();
      }
      res.on('close', cleanUp);
      if (routes.closing.aborted) return endOnClose();
      routes.closing.addEventListener('abort', endOnClose, { once: true });
      if (d.keyWatch) {
        // A revoked or expired key must not keep receiving: the stream says why, in the
        // error shape of the API, and ends; a reconnect then gets the 401.
        watchStreamKey(principal, d.keyWatch, watching.signal, (err) => {
          if (closed) return;
          res.write(`event: unauthenticated\ndata: ${JSON.stringify(errorBody(err.code, err.message, undefined, request.id))}\n\n`);
          endOnClose();
        });
      }
      const lastId = Number(request.headers['last-event-id']);
      let maxReplayed = 0;
      const resume = Number.isInteger(lastId) && lastId > 0;
      if (resume || query.since !== undefined) {
        try {
          // Page through everything after the id (or since the time): a client that was
          // away for a while gets every event it missed, not only the first page.
          for (let after = resume ? lastId : 0; !closed; ) {
            const page = await listVisible(d.store, filtersFor(principal, query), { afterId: after || undefined, sinceMs: resume ? undefined : query.since, limit: REPLAY_PAGE });
            for (const e of page) {
              send(e);
              maxReplayed = Math.max(maxReplayed, e.id);
            }
            if (page.length < REPLAY_PAGE) break;
            after = page.at(-1)!.id;
          }
        } catch (err) {
          // The head is sent: no error response is possible any more. End the stream; the
          // client reconnects with its Last-Event-ID and loses nothing.
          request.log.warn({ err }, 'event replay failed');
          endOnClose();
          return;
        }
      }
      replaying = false;
      for (const e of buffered) if (e.id === 0 || e.id > maxReplayed) send(e);
      if (closed) return;
      res.write(': connected\n\n');
      heartbeat = setInterval(() => res.write(': keep-alive\n\n'), d.heartbeatMs ?? 15_000);
    },
  );
}
