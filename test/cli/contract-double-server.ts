/**
 * TEST DOUBLE, NOT THE PLATFORM. A small in-memory Fastify server that speaks the agent-platform
 * HTTP contract (routes, status codes, error bodies, JSON shapes) so agentctl's own end-to-end
 * tests can run over real HTTP without the control plane, a store or Docker. Phase changes
 * happen only when a test calls `setStatus`; nothing here schedules or runs containers.
 * When the real server exists, the same CLI flows should also be exercised against it.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { AgentJson, EventJson, PhaseName } from '../../src/cli/api-types.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface ContractDouble {
  url: string;
  token: string;
  agents: Map<string, AgentJson>;
  requests: RecordedRequest[];
  /** Largest page the list endpoint returns whatever `limit` asks for, as real servers cap it. */
  maxPageSize: number;
  /** When false, `?name=` is rejected as an unknown parameter (400), as a server without the filter does. */
  nameFilter: boolean;
  /** Changes an agent's status the way the controllers would, recording an event. */
  setStatus(id: string, patch: Partial<AgentJson['status']>): void;
  /** Appends a log line (a newline is added). */
  appendLog(id: string, line: string): void;
  close(): Promise<void>;
}

const DNS1123 = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const CREATE_FIELDS = new Set(['name', 'image', 'command', 'args', 'env', 'workingDir', 'resources', 'restartPolicy', 'labels', 'schedulingPolicy', 'priority', 'nodeSelector', 'tolerations', 'timeoutSeconds']);
const TERMINAL: ReadonlySet<PhaseName> = new Set(['Succeeded', 'Failed', 'Stopped']);

function error(reply: FastifyReply, status: number, code: string, message: string, details?: unknown): FastifyReply {
  return reply.code(status).send({ error: { code, message, ...(details !== undefined ? { details } : {}) } });
}

/** Only the two quantity shapes the tests use; the real parser lives in src/domain/quantity.ts. */
function millicores(q: string): number {
  return q.endsWith('m') ? Number(q.slice(0, -1)) : Number(q) * 1000;
}
function mebibytes(q: string): number {
  return q.endsWith('Gi') ? Number(q.slice(0, -2)) * 1024 : Number(q.replace(/Mi$/, ''));
}

export async function startContractDouble(options: { token?: string } = {}): Promise<ContractDouble> {
  const token = options.token ?? 'double-token';
  const agents = new Map<string, AgentJson>();
  const events = new Map<string, EventJson[]>();
  const logs = new Map<string, Array<{ time: string; line: string }>>();
  const idempotency = new Map<string, string>();
  const followers = new Map<string, Set<() => void>>();
  const requests: RecordedRequest[] = [];
  let eventId = 0;
  // filled in once the server listens; route handlers read maxPageSize from it at request time
  const double = { maxPageSize: 1000, nameFilter: true } as ContractDouble;

  const notify = (id: string): void => {
    for (const wake of followers.get(id) ?? []) wake();
  };
  const addEvent = (id: string, type: EventJson['type'], reason: string, message: string): void => {
    const list = events.get(id) ?? [];
    list.push({ id: ++eventId, objectKind: 'Agent', objectId: id, type, reason, message, time: new Date().toISOString() });
    events.set(id, list);
  };

  const app: FastifyInstance = Fastify({ logger: false, forceCloseConnections: true });
  app.addHook('onRequest', async (req, reply) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers });
    if (req.url === '/health' || req.url === '/ready') return;
    if (req.headers.authorization !== `Bearer ${token}`) return error(reply, 401, 'UNAUTHENTICATED', 'missing or invalid bearer token');
  });

  app.get('/health', async () => ({ status: 'ok', version: '0.0.0-double' }));
  app.get('/ready', async () => ({ status: 'ready' }));

  app.post('/api/v1/agents', async (req, reply) => {
    const body = req.body as Record<string, unknown>;
    const key = req.headers['idempotency-key'];
    if (typeof key === 'string' && idempotency.has(key)) return reply.code(200).send(agents.get(idempotency.get(key)!));
    const unknown = Object.keys(body).filter((k) => !CREATE_FIELDS.has(k));
    if (unknown.length) return error(reply, 400, 'VALIDATION_FAILED', `unknown field(s): ${unknown.join(', ')}`, { fields: unknown });
    if (typeof body.name !== 'string' || !DNS1123.test(body.name)) return error(reply, 400, 'VALIDATION_FAILED', 'name: must be a DNS-1123 label', { field: 'name' });
    if (typeof body.image !== 'string' || body.image === '') return error(reply, 400, 'VALIDATION_FAILED', 'image: required', { field: 'image' });
    if ([...agents.values()].some((a) => a.name === body.name)) return error(reply, 409, 'AGENT_NAME_TAKEN', `an agent named "${body.name}" already exists`);
    const res = (body.resources ?? {}) as { cpu?: string; memory?: string; gpu?: number; limits?: { cpu?: string; memory?: string } };
    const cpu = res.cpu ?? '100m';
    const memory = res.memory ?? '128Mi';
    const now = new Date().toISOString();
    const agent: AgentJson = {
      id: randomBytes(8).toString('hex'),
      tenantId: 'default',
      name: body.name,
      labels: (body.labels as Record<string, string>) ?? {},
      spec: {
        image: body.image,
        command: (body.command as string[]) ?? [],
        args: (body.args as string[]) ?? [],
        env: (body.env as Record<string, string>) ?? {},
        ...(typeof body.workingDir === 'string' ? { workingDir: body.workingDir } : {}),
        resources: {
          cpu,
          memory,
          gpu: res.gpu ?? 0,
          limits: { cpu: res.limits?.cpu ?? cpu, memory: res.limits?.memory ?? memory },
          cpuMillicores: millicores(cpu),
          memoryMiB: mebibytes(memory),
          cpuLimitMillicores: millicores(res.limits?.cpu ?? cpu),
          memoryLimitMiB: mebibytes(res.limits?.memory ?? memory),
        },
        restartPolicy: (body.restartPolicy as string) ?? 'Never',
        schedulingPolicy: (body.schedulingPolicy as string) ?? 'balanced',
        priority: (body.priority as number) ?? 0,
        nodeSelector: (body.nodeSelector as Record<string, string>) ?? {},
        tolerations: (body.tolerations as AgentJson['spec']['tolerations']) ?? [],
        ...(typeof body.timeoutSeconds === 'number' ? { timeoutSeconds: body.timeoutSeconds } : {}),
      },
      desiredState: 'running',
      status: { phase: 'Pending', restarts: 0, createdAt: now },
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    agents.set(agent.id, agent);
    logs.set(agent.id, []);
    if (typeof key === 'string') idempotency.set(key, agent.id);
    addEvent(agent.id, 'Normal', 'Created', `agent ${agent.name} created`);
    return reply.code(201).send(agent);
  });

  app.get('/api/v1/agents', async (req, reply) => {
    const q = req.query as Record<string, string>;
    const allowed = new Set(['phase', 'label', 'limit', 'cursor', ...(double.nameFilter ? ['name'] : [])]);
    const unknown = Object.keys(q).filter((k) => !allowed.has(k));
    if (unknown.length) return error(reply, 400, 'VALIDATION_FAILED', `unknown query parameter(s): ${unknown.join(', ')}`);
    let items = [...agents.values()];
    if (q.phase) items = items.filter((a) => q.phase!.split(',').includes(a.status.phase));
    if (q.label) {
      const want = Object.fromEntries(q.label.split(',').map((p) => p.split('=') as [string, string]));
      items = items.filter((a) => Object.entries(want).every(([k, v]) => a.labels[k] === v));
    }
    if (q.name) items = items.filter((a) => a.name === q.name);
    const offset = q.cursor ? Number(q.cursor) : 0;
    const limit = Math.min(q.limit ? Number(q.limit) : 100, double.maxPageSize);
    const page = items.slice(offset, offset + limit);
    return { items: page, ...(offset + limit < items.length ? { nextCursor: String(offset + limit) } : {}) };
  });

  const find = (id: string, reply: FastifyReply): AgentJson | undefined => {
    const agent = agents.get(id);
    if (!agent) void error(reply, 404, 'AGENT_NOT_FOUND', `agent "${id}" does not exist`, { agentId: id });
    return agent;
  };

  app.get('/api/v1/agents/:id', async (req, reply) => find((req.params as { id: string }).id, reply) ?? reply);

  app.delete('/api/v1/agents/:id', async (req, reply) => {
    const agent = find((req.params as { id: string }).id, reply);
    if (!agent) return reply;
    if (agent.status.phase === 'Running') {
      // a live container takes a moment to remove: answer 202, finish shortly after
      agent.desiredState = 'deleted';
      agent.status = { ...agent.status, phase: 'Deleting' };
      setTimeout(() => {
        agents.delete(agent.id);
        notify(agent.id);
      }, 50).unref();
      return reply.code(202).send(agent);
    }
    agents.delete(agent.id);
    notify(agent.id);
    return { id: agent.id, deleted: true };
  });

  for (const action of ['stop', 'start'] as const) {
    app.post(`/api/v1/agents/:id/${action}`, async (req, reply) => {
      const agent = find((req.params as { id: string }).id, reply);
      if (!agent) return reply;
      agent.desiredState = action === 'stop' ? 'stopped' : 'running';
      agent.status = { ...agent.status, phase: action === 'stop' ? 'Stopping' : 'Pending' };
      agent.version += 1;
      addEvent(agent.id, 'Normal', action === 'stop' ? 'Stopping' : 'Starting', `${action} requested`);
      return agent;
    });
  }

  app.get('/api/v1/agents/:id/events', async (req, reply) => {
    const agent = find((req.params as { id: string }).id, reply);
    if (!agent) return reply;
    return { items: events.get(agent.id) ?? [] };
  });

  app.get('/api/v1/agents/:id/logs', async (req, reply) => {
    const agent = find((req.params as { id: string }).id, reply);
    if (!agent) return reply;
    const q = req.query as { tail?: string; since?: string; follow?: string; timestamps?: string };
    if (q.since && !/^[0-9]+(s|m|h)$/.test(q.since) && Number.isNaN(Date.parse(q.since))) return error(reply, 400, 'VALIDATION_FAILED', 'since: must be an RFC 3339 time or a duration like "10m"');
    const sinceMs = q.since === undefined ? 0 : /^[0-9]+s$/.test(q.since) ? Date.now() - Number(q.since.slice(0, -1)) * 1000 : Date.parse(q.since);
    const all = logs.get(agent.id) ?? [];
    let lines = all.filter((l) => Date.parse(l.time) >= sinceMs);
    if (q.tail !== undefined) lines = lines.slice(Math.max(0, lines.length - Number(q.tail)));
    const format = (l: { time: string; line: string }): string => (q.timestamps === 'true' ? `${l.time} ${l.line}\n` : `${l.line}\n`);
    reply.type('text/plain; charset=utf-8');
    if (q.follow !== 'true') return lines.map(format).join('');
    const stream = new PassThrough();
    for (const l of lines) stream.write(format(l));
    let sent = all.length;
    const wake = (): void => {
      const current = logs.get(agent.id) ?? [];
      for (; sent < current.length; sent++) stream.write(format(current[sent]!));
      const live = agents.get(agent.id);
      if (!live || TERMINAL.has(live.status.phase)) stream.end();
    };
    const set = followers.get(agent.id) ?? new Set();
    set.add(wake);
    followers.set(agent.id, set);
    stream.on('close', () => set.delete(wake));
    req.raw.on('close', () => stream.destroy());
    wake();
    return reply.send(stream);
  });

  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('double did not bind a TCP port');

  Object.assign(double, {
    url: `http://127.0.0.1:${address.port}`,
    token,
    agents,
    requests,
    setStatus(id, patch) {
      const agent = agents.get(id);
      if (!agent) throw new Error(`double: no agent ${id}`);
      const before = agent.status.phase;
      agent.status = { ...agent.status, ...patch };
      agent.version += 1;
      agent.updatedAt = new Date().toISOString();
      if (patch.phase && patch.phase !== before) {
        addEvent(id, patch.phase === 'Failed' ? 'Warning' : 'Normal', patch.reason ?? patch.phase, patch.message ?? `phase ${before} -> ${patch.phase}`);
      }
      notify(id);
    },
    appendLog(id, line) {
      const list = logs.get(id);
      if (!list) throw new Error(`double: no agent ${id}`);
      list.push({ time: new Date().toISOString(), line });
      notify(id);
    },
    async close() {
      await app.close();
    },
  } satisfies Omit<ContractDouble, 'maxPageSize' | 'nameFilter'>);
  return double;
}
