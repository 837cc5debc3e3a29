import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { loadConfig, type Config } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { DockerRuntime } from '../../src/runtime/docker/docker-runtime.js';
import { AGENT_ID_LABEL } from '../../src/runtime/runtime.js';
import { ScopedRuntime } from './scoped-runtime.js';

export const PYTHON_IMAGE = 'agent-samples/simple-python:latest';

/** The agent JSON the API returns (only the fields the tests read are typed). */
export interface AgentJson {
  id: string;
  name: string;
  labels: Record<string, string>;
  desiredState: string;
  spec: Record<string, unknown> & { resources: Record<string, number | string> };
  status: {
    phase: string;
    reason?: string;
    message?: string;
    node?: string;
    containerId?: string;
    exitCode?: number;
    restarts: number;
    startedAt?: string;
    finishedAt?: string;
    nextAttemptAt?: string;
  };
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed body when it is JSON, else undefined. */
  json: T;
}

export interface RequestOptions {
  /** Sent as JSON unless `rawBody` is given. */
  body?: unknown;
  /** Sent verbatim (with `content-type: application/json` unless headers say otherwise). */
  rawBody?: string;
  headers?: Record<string, string>;
  /** Bearer token; null sends no Authorization header. Default: the admin token. */
  token?: string | null;
}

export interface HarnessOptions {
  /** AGENT_PLATFORM_* variables on top of the fast test defaults. */
  env?: Record<string, string>;
  config?: Partial<Config>;
  /** Reuse this data dir: a restart of an earlier platform closed with `keep`. */
  dataDir?: string;
  /** Agent ids to treat as this platform's own from the start (e.g. those of the platform it replaces). */
  adopt?: Iterable<string>;
}

/** Fast intervals so the whole suite runs in tens of seconds, not minutes. */
const FAST_ENV: Record<string, string> = {
  AGENT_PLATFORM_PORT: '0',
  AGENT_PLATFORM_LOG_LEVEL: 'silent',
  AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
  AGENT_PLATFORM_STOP_GRACE_MS: '1000',
  AGENT_PLATFORM_START_TIMEOUT_MS: '30000',
};

export const uniqueName = (prefix: string): string => `${prefix}-${randomBytes(3).toString('hex')}`;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * One platform booted on a random port with a temp data dir (SQLite), the real
 * DockerRuntime and fast intervals, driven only through HTTP. Tracks every agent id it
 * sees so `close()` removes their containers even when a test failed midway.
 */
export class TestPlatform {
  readonly docker: Docker;

  private constructor(
    /** Every agent id the API returned to this harness; also the runtime's scope. */
    readonly agentIds: Set<string>,
    readonly platform: Platform,
    readonly baseUrl: string,
    readonly token: string,
    readonly config: Readonly<Config>,
    readonly dataDir: string,
  ) {
    this.docker = new Docker(config.dockerHost?.startsWith('unix://') ? { socketPath: config.dockerHost.slice('unix://'.length) } : undefined);
  }

  static async start(opts: HarnessOptions = {}): Promise<TestPlatform> {
    const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'ap-it-')));
    const token = `it_${randomBytes(16).toString('hex')}`;
    const config = loadConfig(
      { ...FAST_ENV, AGENT_PLATFORM_DATA_DIR: dataDir, AGENT_PLATFORM_ADMIN_TOKEN: token, DOCKER_HOST: process.env.DOCKER_HOST, ...opts.env },
      opts.config,
    );
    const ids = new Set<string>(opts.adopt);
    const runtime = new ScopedRuntime(new DockerRuntime({ nodeId: config.nodeName, dockerHost: config.dockerHost }), (id) => ids.has(id));
    const platform = await buildPlatform(config, { runtimes: [runtime] });
    // Learn ids from the platform's own events too (Created is published before the
    // controller makes a container), so the scope holds even before the POST answers.
    platform.bus.subscribe((e) => {
      if (e.objectKind === 'Agent') ids.add(e.objectId);
    });
    const address = await platform.start();
    return new TestPlatform(ids, platform, address.replace('[::1]', '127.0.0.1'), token, config, dataDir);
  }

  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? this.token : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.rawBody !== undefined) body = opts.rawBody;
    else if (opts.body !== undefined) body = JSON.stringify(opts.body);
    if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const maybe = json as { id?: unknown; items?: { id?: unknown }[] } | undefined;
    if (typeof maybe?.id === 'string') this.agentIds.add(maybe.id);
    return { status: res.status, headers: res.headers, text, json: json as T };
  }

  /** POST /api/v1/agents and expect 201. */
  async create(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<AgentJson> {
    const res = await this.request<AgentJson>('POST', '/api/v1/agents', { body, headers });
    if (res.status !== 201) throw new Error(`create ${String(body.name)}: expected 201, got ${res.status}: ${res.text}`);
    return res.json;
  }

  async get(id: string): Promise<AgentJson> {
    const res = await this.request<AgentJson>('GET', `/api/v1/agents/${id}`);
    if (res.status !== 200) throw new Error(`GET agent ${id}: ${res.status} ${res.text}`);
    return res.json;
  }

  /**
   * Polls GET every 100 ms until `until` holds; returns every distinct status seen on
   * the way (phase/reason/restarts), so tests can assert the path, not only the end.
   */
  async waitFor(id: string, until: (a: AgentJson) => boolean, timeoutMs = 20_000, what = 'condition'): Promise<{ agent: AgentJson; seen: AgentJson[] }> {
    const deadline = Date.now() + timeoutMs;
    const seen: AgentJson[] = [];
    let last: AgentJson | undefined;
    for (;;) {
      last = await this.get(id);
      const prev = seen.at(-1);
      if (!prev || prev.status.phase !== last.status.phase || prev.status.reason !== last.status.reason || prev.status.restarts !== last.status.restarts) seen.push(last);
      if (until(last)) return { agent: last, seen };
      if (Date.now() > deadline) {
        throw new Error(`agent ${id}: timed out after ${timeoutMs} ms waiting for ${what}; path: ${seen.map((a) => `${a.status.phase}/${a.status.reason}/${a.status.restarts}`).join(' -> ')}; last status ${JSON.stringify(last.status)}`);
      }
      await sleep(100);
    }
  }

  waitForPhase(id: string, phase: string, timeoutMs = 20_000): Promise<{ agent: AgentJson; seen: AgentJson[] }> {
    return this.waitFor(id, (a) => a.status.phase === phase, timeoutMs, `phase ${phase}`);
  }

  /** Containers (running or not) labelled with the agent id, straight from dockerd. */
  async containersOf(agentId: string): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: { label: [`${AGENT_ID_LABEL}=${agentId}`] } });
  }

  async events(id: string): Promise<{ reason: string; type: string; message: string }[]> {
    const res = await this.request<{ items: { reason: string; type: string; message: string }[] }>('GET', `/api/v1/agents/${id}/events`);
    if (res.status !== 200) throw new Error(`GET events ${id}: ${res.status} ${res.text}`);
    return res.json.items;
  }

  /**
   * Stops the platform, then removes every container of its agents and the data dir
   * it made. `keep` leaves both, to start another platform on them (a restart).
   */
  async close(opts: { keep?: boolean } = {}): Promise<void> {
    // (The data dir is removed whoever made it: a restarted platform inherits it.)
    try {
      await this.platform.close();
    } finally {
      if (!opts.keep) await this.cleanUp();
    }
  }

  private async cleanUp(): Promise<void> {
    await Promise.allSettled(
      [...this.agentIds].map(async (id) => {
        for (const c of await this.containersOf(id)) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
      }),
    );
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

/** Fails (does not skip) when an image the tests need is missing: it is a setup bug. */
export async function requireImage(docker: Docker, image: string): Promise<void> {
  try {
    await docker.getImage(image).inspect();
  } catch {
    throw new Error(`image ${image} is missing on the Docker daemon; build it with \`make images\` (scripts/build-images.sh)`);
  }
}
