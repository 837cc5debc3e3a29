import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Docker from 'dockerode';
import { loadConfig, type Config } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { DockerRuntime } from '../../src/runtime/docker/docker-runtime.js';
import { AGENT_ID_LABEL, type Runtime } from '../../src/runtime/runtime.js';
import { SimulatedCluster } from '../../src/runtime/simulated/simulated-cluster.js';
import { sseFrames, type SseFrame } from '../../src/cli/sse-frames.js';
import { run } from '../../src/cli/agentctl.js';
import { ScopedRuntime } from '../integration/scoped-runtime.js';

/** An event as the API returns it. */
export interface EventJson {
  id: number;
  objectKind: string;
  objectId: string;
  type: string;
  reason: string;
  message: string;
  data?: any;
  time: string;
}

export interface Res<T = any> {
  status: number;
  headers: Headers;
  text: string;
  json: T;
}

export interface EventsPlatformOptions {
  /** AGENT_PLATFORM_* on top of the fast defaults. */
  env?: Record<string, string>;
  /** 'docker': one Docker node "local" (scoped to this platform's agents); 'simulated': `simulatedNodes` in-memory nodes, no Docker. */
  nodes: 'docker' | 'simulated';
  simulatedNodes?: number;
  /** Keep the platform's JSON log lines (level info) for assertions. */
  captureLogs?: boolean;
}

const FAST_ENV: Record<string, string> = {
  AGENT_PLATFORM_PORT: '0',
  AGENT_PLATFORM_HOST: '127.0.0.1',
  AGENT_PLATFORM_LOG_LEVEL: 'silent',
  AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
  AGENT_PLATFORM_STOP_GRACE_MS: '1000',
  AGENT_PLATFORM_START_TIMEOUT_MS: '60000',
  AGENT_PLATFORM_RATE_LIMIT_RPS: '0',
};

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const uniqueName = (prefix: string): string => `${prefix}-${randomBytes(3).toString('hex')}`;

/**
 * The real platform (buildPlatform in-process: Fastify, SQLite in a temp dir, controllers,
 * scheduler, node pool) on a random loopback port, driven over HTTP. Docker nodes are the
 * local dockerd behind ScopedRuntime (other test files' platforms share that dockerd, and
 * the orphan sweep must not touch their containers); simulated nodes are a
 * SimulatedCluster this test can partition with setNodeDown.
 */
export class EventsPlatform {
  readonly agentIds = new Set<string>();
  readonly logLines: string[] = [];
  platform!: Platform;
  baseUrl = '';
  config!: Readonly<Config>;
  cluster: SimulatedCluster | undefined;
  readonly docker = new Docker();
  readonly token = `ev_${randomBytes(16).toString('hex')}`;
  private dir = '';
  private readonly streams = new Set<AbortController>();

  static async start(o: EventsPlatformOptions): Promise<EventsPlatform> {
    const p = new EventsPlatform();
    p.dir = await mkdtemp(join(tmpdir(), 'ap-events-'));
    p.config = loadConfig({
      ...FAST_ENV,
      ...(o.captureLogs ? { AGENT_PLATFORM_LOG_LEVEL: 'info' } : {}),
      AGENT_PLATFORM_DATA_DIR: join(p.dir, 'data'),
      AGENT_PLATFORM_ADMIN_TOKEN: p.token,
      DOCKER_HOST: process.env.DOCKER_HOST,
      ...o.env,
    });
    let runtimes: Runtime[];
    if (o.nodes === 'docker') {
      runtimes = [new ScopedRuntime(new DockerRuntime({ nodeId: p.config.nodeName, dockerHost: p.config.dockerHost }), (id) => p.agentIds.has(id))];
    } else {
      p.cluster = new SimulatedCluster({ nodes: o.simulatedNodes ?? 2, shape: { cpuMillicores: 4000, memoryMiB: 8192 }, idPrefix: 'sim-' });
      runtimes = p.cluster.runtimes();
    }
    const logStream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) p.logLines.push(line);
        done();
      },
    });
    p.platform = await buildPlatform(p.config, { runtimes, ...(o.captureLogs ? { logStream } : {}) });
    // Created is recorded before the controller makes a container, so the scope holds from the start.
    p.platform.bus.subscribe((e) => {
      if (e.objectKind === 'Agent') p.agentIds.add(e.objectId);
    });
    p.baseUrl = (await p.platform.start()).replace('[::1]', '127.0.0.1');
    return p;
  }

  async request<T = any>(method: string, path: string, o: { body?: unknown; headers?: Record<string, string>; token?: string } = {}): Promise<Res<T>> {
    const headers: Record<string, string> = { authorization: `Bearer ${o.token ?? this.token}`, ...o.headers };
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers, ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}) });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json: json as T };
  }

  async expect<T = any>(status: number, method: string, path: string, o: { body?: unknown; headers?: Record<string, string>; token?: string } = {}): Promise<Res<T>> {
    const r = await this.request<T>(method, path, o);
    if (r.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${r.status}: ${r.text}`);
    return r;
  }

  async create(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<{ id: string; name: string; status: { phase: string; reason?: string } }> {
    const r = await this.expect(201, 'POST', '/api/v1/agents', { body, headers });
    this.agentIds.add(r.json.id);
    return r.json;
  }

  async events(query: string, headers: Record<string, string> = {}): Promise<EventJson[]> {
    return (await this.expect<{ items: EventJson[] }>(200, 'GET', `/api/v1/events${query}`, { headers })).json.items;
  }

  /** Polls GET /api/v1/events until one matches; returns it. */
  async waitForEvent(query: string, match: (e: EventJson) => boolean, timeoutMs = 20_000, headers: Record<string, string> = {}): Promise<EventJson> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = (await this.events(query, headers)).find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no event matching within ${timeoutMs} ms for ${query}; have: ${(await this.events(query, headers)).map((e) => `${e.objectId}/${e.reason}`).join(', ')}`);
      await sleep(100);
    }
  }

  async waitForPhase(id: string, phase: string, timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = (await this.expect(200, 'GET', `/api/v1/agents/${id}`)).json;
      if (a.status.phase === phase) return a;
      if (Date.now() > deadline) throw new Error(`agent ${id}: no phase ${phase} within ${timeoutMs} ms; status ${JSON.stringify(a.status)}`);
      await sleep(100);
    }
  }

  /** Opens GET /api/v1/events/stream; frames are collected as they arrive. */
  async openStream(query = '', headers: Record<string, string> = {}): Promise<SseStream> {
    const abort = new AbortController();
    this.streams.add(abort);
    const res = await fetch(`${this.baseUrl}/api/v1/events/stream${query}`, { headers: { authorization: `Bearer ${this.token}`, accept: 'text/event-stream', ...headers }, signal: abort.signal });
    if (res.status !== 200 || !res.body) throw new Error(`stream ${query}: ${res.status} ${await res.text()}`);
    return new SseStream(res, abort);
  }

  /** agentctl in-process against this platform. */
  async cli(args: string[], signal?: AbortSignal): Promise<{ code: number; stdout: string; stderr: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const sink = (to: string[]) => ({ write: (c: string | Uint8Array) => (to.push(typeof c === 'string' ? c : Buffer.from(c).toString('utf8')), true), isTTY: false });
    const code = await run(args, { stdout: sink(out), stderr: sink(err), env: { HOME: this.dir, AGENTCTL_SERVER: this.baseUrl, AGENTCTL_TOKEN: this.token }, ...(signal ? { signal } : {}) });
    return { code, stdout: out.join(''), stderr: err.join('') };
  }

  /** Parsed JSON log lines the platform wrote (captureLogs). */
  logs(): Record<string, any>[] {
    return this.logLines.map((l) => JSON.parse(l) as Record<string, any>);
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.abort();
    try {
      await this.platform?.close();
    } finally {
      if (!this.cluster) {
        await Promise.allSettled(
          [...this.agentIds].map(async (id) => {
            const cs = await this.docker.listContainers({ all: true, filters: { label: [`${AGENT_ID_LABEL}=${id}`] } });
            for (const c of cs) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
          }),
        );
      }
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}

/** A received frame with the moment it arrived. */
export interface ReceivedFrame extends SseFrame {
  receivedAt: number;
  /** The parsed event (data), when it is one. */
  event_?: EventJson;
}

/** An open SSE response read in the background; `frames` grows as frames arrive. */
export class SseStream {
  readonly frames: ReceivedFrame[] = [];
  ended = false;
  private waiters = new Set<() => void>();
  private readonly done: Promise<void>;

  constructor(
    res: Response,
    private readonly abort: AbortController,
  ) {
    this.done = (async () => {
      try {
        for await (const f of sseFrames(res.body!)) {
          let parsed: EventJson | undefined;
          try {
            parsed = JSON.parse(f.data) as EventJson;
          } catch {
            parsed = undefined;
          }
          this.frames.push({ ...f, receivedAt: Date.now(), ...(parsed ? { event_: parsed } : {}) });
          for (const w of this.waiters) w();
        }
      } catch {
        // aborted by close(): the frames so far stay readable
      } finally {
        this.ended = true;
        for (const w of this.waiters) w();
      }
    })();
  }

  events(): EventJson[] {
    return this.frames.flatMap((f) => (f.event_ ? [f.event_] : []));
  }

  /** Waits for a frame whose event matches; rejects after `timeoutMs`. */
  async waitFor(match: (e: EventJson) => boolean, timeoutMs = 20_000): Promise<ReceivedFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find((f) => f.event_ && match(f.event_));
      if (found) return found;
      if (this.ended) throw new Error(`stream ended without a matching event; got ${this.events().map((e) => e.reason).join(', ')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching event within ${timeoutMs} ms; got ${this.events().map((e) => `${e.objectId}/${e.reason}`).join(', ')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 500));
        const waiters = this.waiters;
        function done(): void {
          clearTimeout(t);
          waiters.delete(done);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}
