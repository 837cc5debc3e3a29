import { NotFoundError, UnavailableError, InputError } from '../domain/errors.js';
import { ApiError } from './api-error.js';
import type { AgentJson, AgentListJson, CreateAgentBody, EventJson } from './api-types.js';
import { formatDurationMs } from './duration.js';
import type { DrainResultJson, NodeDetailJson, NodeJson } from './node-types.js';
import { sseFrames, type SseFrame } from './sse-frames.js';

/** Options for {@link PlatformClient}. */
export interface PlatformClientOptions {
  /** Base URL without trailing slash, e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>` when set. */
  token?: string | undefined;
  /**
   * Upper bound for one non-streaming request. Streaming requests (logs -f) have none.
   * @default 30000
   */
  requestTimeoutMs?: number;
  /** @default `agentctl` */
  userAgent?: string;
}

export interface ListAgentsQuery {
  phase?: string[] | undefined;
  labels?: Record<string, string> | undefined;
  name?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

export interface LogsQuery {
  tail?: number | undefined;
  /** Already in the server's format: "600s" or an RFC 3339 time. */
  since?: string | undefined;
  follow?: boolean | undefined;
  timestamps?: boolean | undefined;
}

/** Filters of GET /api/v1/events and its stream. */
export interface EventsQuery {
  /** Agent id (not a name: resolve names first). */
  agent?: string | undefined;
  node?: string | undefined;
  /** Already in the server's format: "600s" or an RFC 3339 time. */
  since?: string | undefined;
  limit?: number | undefined;
}

/** DELETE answers 200 once the agent is gone, or 202 with the agent while it is Deleting. */
export type DeleteResult = { deleted: true; id: string } | { deleted: false; agent: AgentJson };

interface RequestOptions {
  query?: Record<string, string | undefined> | undefined;
  body?: unknown;
  headers?: Record<string, string> | undefined;
  signal?: AbortSignal | undefined;
  /** No overall timeout: the response is a stream that may legitimately last long. */
  streaming?: boolean;
}

/** Ids are lowercase alphanumerics; names are DNS-1123 labels that may contain "-". */
const ID_SHAPE = /^[a-z0-9]{8,40}$/;
const PAGE_SIZE = 500;

/**
 * HTTP client for the agent-platform API (global fetch, Node 20). Every error becomes a
 * DomainError: {@link ApiError} for an error body, UnavailableError (PLATFORM_UNREACHABLE,
 * REQUEST_TIMEOUT) when no answer came.
 */
export class PlatformClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly requestTimeoutMs: number;
  private readonly userAgent: string;

  constructor(options: PlatformClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.userAgent = options.userAgent ?? 'agentctl';
  }

  /** POST /api/v1/agents; `created` is false on an idempotent replay (200). */
  async createAgent(body: CreateAgentBody, options: { idempotencyKey?: string | undefined; signal?: AbortSignal | undefined } = {}): Promise<{ agent: AgentJson; created: boolean }> {
    const headers: Record<string, string> = {};
    if (options.idempotencyKey) headers['Idempotency-Key'] = options.idempotencyKey;
    const res = await this.request('POST', '/api/v1/agents', { body, headers, signal: options.signal });
    return { agent: (await res.json()) as AgentJson, created: res.status === 201 };
  }

  /** One page of agents. */
  async listAgents(query: ListAgentsQuery = {}, signal?: AbortSignal): Promise<AgentListJson> {
    const res = await this.request('GET', '/api/v1/agents', {
      query: {
        phase: query.phase?.length ? query.phase.join(',') : undefined,
        label: query.labels && Object.keys(query.labels).length ? Object.entries(query.labels).map(([k, v]) => `${k}=${v}`).join(',') : undefined,
        name: query.name,
        limit: query.limit !== undefined ? String(query.limit) : undefined,
        cursor: query.cursor,
      },
      signal,
    });
    return (await res.json()) as AgentListJson;
  }

  /** Every agent matching the query, following `nextCursor` page by page. */
  async listAllAgents(query: Omit<ListAgentsQuery, 'cursor' | 'limit'> = {}, signal?: AbortSignal): Promise<AgentJson[]> {
    const items: AgentJson[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.listAgents({ ...query, limit: PAGE_SIZE, cursor }, signal);
      items.push(...page.items);
      cursor = page.nextCursor || undefined;
    } while (cursor);
    return items;
  }

  async getAgent(id: string, signal?: AbortSignal): Promise<AgentJson> {
    const res = await this.request('GET', `/api/v1/agents/${encodeURIComponent(id)}`, { signal });
    return (await res.json()) as AgentJson;
  }

  /**
   * Agents with exactly this name. Uses `?name=`; the result is filtered again here so a
   * server that ignores the parameter still gives the right answer, and a server that
   * rejects it (400) falls back to listing everything.
   */
  async findAgentsByName(name: string, signal?: AbortSignal): Promise<AgentJson[]> {
    let items: AgentJson[];
    try {
      items = await this.listAllAgents({ name }, signal);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 400)) throw err;
      items = await this.listAllAgents({}, signal);
    }
    return items.filter((a) => a.name === name);
  }

  /**
   * Resolves NAME|ID as kubectl users expect: something shaped like an id is tried as an
   * id first, then everything is tried as a name.
   * @throws NotFoundError AGENT_NOT_FOUND when neither matches
   * @throws InputError AMBIGUOUS_NAME when several agents share the name
   */
  async resolveAgent(nameOrId: string, signal?: AbortSignal): Promise<AgentJson> {
    if (ID_SHAPE.test(nameOrId)) {
      try {
        return await this.getAgent(nameOrId, signal);
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
      }
    }
    const matches = await this.findAgentsByName(nameOrId, signal);
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new InputError(`name "${nameOrId}" matches ${matches.length} agents (${matches.map((a) => a.id).join(', ')}); use an id`, { name: nameOrId }, 'AMBIGUOUS_NAME');
    }
    throw new NotFoundError('AGENT_NOT_FOUND', `agent "${nameOrId}" not found (looked up by id and by name)`, { nameOrId });
  }

  async deleteAgent(id: string, signal?: AbortSignal): Promise<DeleteResult> {
    const res = await this.request('DELETE', `/api/v1/agents/${encodeURIComponent(id)}`, { signal });
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status === 202 || body.deleted !== true) return { deleted: false, agent: body as unknown as AgentJson };
    return { deleted: true, id: String(body.id ?? id) };
  }

  async stopAgent(id: string, signal?: AbortSignal): Promise<AgentJson> {
    const res = await this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/stop`, { signal });
    return (await res.json()) as AgentJson;
  }

  async startAgent(id: string, signal?: AbortSignal): Promise<AgentJson> {
    const res = await this.request('POST', `/api/v1/agents/${encodeURIComponent(id)}/start`, { signal });
    return (await res.json()) as AgentJson;
  }

  /** Log bytes as they arrive; with `follow` the stream ends when the container does. */
  async *streamLogs(id: string, query: LogsQuery, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const res = await this.request('GET', `/api/v1/agents/${encodeURIComponent(id)}/logs`, {
      query: {
        tail: query.tail !== undefined ? String(query.tail) : undefined,
        since: query.since,
        follow: query.follow ? 'true' : undefined,
        timestamps: query.timestamps ? 'true' : undefined,
      },
      signal,
      streaming: Boolean(query.follow),
    });
    if (!res.body) return;
    try {
      for await (const chunk of res.body) yield chunk;
    } catch (err) {
      throw this.transportError(err, signal);
    }
  }

  async listAgentEvents(id: string, signal?: AbortSignal): Promise<EventJson[]> {
    const res = await this.request('GET', `/api/v1/agents/${encodeURIComponent(id)}/events`, { signal });
    return ((await res.json()) as { items: EventJson[] }).items;
  }

  /** GET /api/v1/events: oldest first. */
  async listEvents(query: EventsQuery = {}, signal?: AbortSignal): Promise<EventJson[]> {
    const res = await this.request('GET', '/api/v1/events', {
      query: { agent: query.agent, node: query.node, since: query.since, limit: query.limit !== undefined ? String(query.limit) : undefined },
      signal,
    });
    return ((await res.json()) as { items: EventJson[] }).items;
  }

  /**
   * GET /api/v1/events/stream: Server-Sent Events frames until the server ends the stream
   * or `signal` aborts. With `lastEventId` the server first replays stored events after it.
   */
  async *streamEvents(query: Omit<EventsQuery, 'limit'>, options: { lastEventId?: string | undefined; signal?: AbortSignal | undefined } = {}): AsyncGenerator<SseFrame> {
    const res = await this.request('GET', '/api/v1/events/stream', {
      query: { agent: query.agent, node: query.node, since: query.since },
      headers: { accept: 'text/event-stream', ...(options.lastEventId ? { 'last-event-id': options.lastEventId } : {}) },
      signal: options.signal,
      streaming: true,
    });
    if (!res.body) return;
    try {
      yield* sseFrames(res.body);
    } catch (err) {
      throw this.transportError(err, options.signal);
    }
  }

  async listNodes(signal?: AbortSignal): Promise<NodeJson[]> {
    const res = await this.request('GET', '/api/v1/nodes', { signal });
    return ((await res.json()) as { items: NodeJson[] }).items;
  }

  async getNode(id: string, signal?: AbortSignal): Promise<NodeDetailJson> {
    const res = await this.request('GET', `/api/v1/nodes/${encodeURIComponent(id)}`, { signal });
    return (await res.json()) as NodeDetailJson;
  }

  /** POST /api/v1/nodes/{id}/cordon | uncordon; returns the node. */
  async setNodeCordon(id: string, cordoned: boolean, signal?: AbortSignal): Promise<NodeJson> {
    const res = await this.request('POST', `/api/v1/nodes/${encodeURIComponent(id)}/${cordoned ? 'cordon' : 'uncordon'}`, { signal });
    return (await res.json()) as NodeJson;
  }

  async drainNode(id: string, signal?: AbortSignal): Promise<DrainResultJson> {
    const res = await this.request('POST', `/api/v1/nodes/${encodeURIComponent(id)}/drain`, { signal });
    return (await res.json()) as DrainResultJson;
  }

  /** GET /api/v1/whoami: the caller's subject, tenant and role. */
  async whoami(signal?: AbortSignal): Promise<{ subject: string; tenantId: string; role: string }> {
    const res = await this.request('GET', '/api/v1/whoami', { signal });
    return (await res.json()) as { subject: string; tenantId: string; role: string };
  }

  /** GET /api/v1/tenants/{id}/usage; `csv` asks for text/csv and returns the text, else the parsed JSON. */
  async getUsage(tenantId: string, query: Record<string, string | undefined>, options: { csv?: boolean; signal?: AbortSignal | undefined } = {}): Promise<unknown> {
    const res = await this.request('GET', `/api/v1/tenants/${encodeURIComponent(tenantId)}/usage`, {
      query,
      headers: options.csv ? { accept: 'text/csv' } : undefined,
      signal: options.signal,
    });
    return options.csv ? res.text() : ((await res.json()) as unknown);
  }

  /** GET /health (no auth); returns the parsed body, or its text when it is not JSON. */
  async health(signal?: AbortSignal): Promise<unknown> {
    const res = await this.request('GET', '/health', { signal });
    const text = await res.text();
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }

  private async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { 'user-agent': this.userAgent, accept: 'application/json, text/plain', ...options.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const signals = [options.signal, options.streaming ? undefined : AbortSignal.timeout(this.requestTimeoutMs)].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length ? AbortSignal.any(signals) : undefined;
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body, signal });
    } catch (err) {
      throw this.transportError(err, options.signal);
    }
    if (res.ok) return res;
    throw await this.errorFromResponse(res);
  }

  /** Maps fetch failures to stable codes; the caller's own abort is passed through untouched. */
  private transportError(err: unknown, callerSignal: AbortSignal | undefined): unknown {
    if (callerSignal?.aborted) return callerSignal.reason ?? err;
    if (err instanceof DOMException && err.name === 'TimeoutError') {
      return new UnavailableError('REQUEST_TIMEOUT', `the platform at ${this.baseUrl} did not answer within ${formatDurationMs(this.requestTimeoutMs)}`, { server: this.baseUrl });
    }
    if (err instanceof TypeError) {
      return new UnavailableError('PLATFORM_UNREACHABLE', `cannot reach the platform at ${this.baseUrl}: ${describeCause(err)}`, { server: this.baseUrl });
    }
    return err;
  }

  private async errorFromResponse(res: Response): Promise<ApiError> {
    const text = await res.text().catch(() => '');
    try {
      const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
      if (parsed.error && typeof parsed.error.message === 'string') {
        const code = typeof parsed.error.code === 'string' ? parsed.error.code : `HTTP_${res.status}`;
        let message = parsed.error.message;
        if (res.status === 401 && !this.token) message += '; no token is configured: pass --token or set AGENTCTL_TOKEN';
        return new ApiError(res.status, code, message, parsed.error.details);
      }
    } catch {
      // not JSON (a proxy's HTML page, say): fall through and show the start of the text
    }
    const snippet = text.trim().slice(0, 200);
    return new ApiError(res.status, `HTTP_${res.status}`, `${res.status} ${res.statusText}${snippet ? `: ${snippet}` : ''}`);
  }
}

/** undici hides the real reason (ECONNREFUSED, ENOTFOUND) in `cause`, sometimes an AggregateError. */
function describeCause(err: TypeError): string {
  const cause = (err as { cause?: unknown }).cause as { code?: string; message?: string; errors?: Array<{ code?: string; message?: string }> } | undefined;
  if (!cause) return err.message;
  const first = cause.errors?.[0];
  const code = cause.code ?? first?.code;
  const message = cause.message || first?.message || err.message;
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
