import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/config.js';
import { buildPlatform, type Platform, type PlatformOverrides } from '../../src/platform.js';
import { createScratchDatabase, probePostgres, type ScratchDatabase } from '../crash/scratch-database.js';

export type StoreKind = 'sqlite' | 'postgres';

export const PG_URL = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.AGENT_PLATFORM_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const isCI = process.env.CI === 'true';

/** Simulated nodes: agents "run" in memory, so these tests need no Docker. */
export const SIMULATED_NODES = JSON.stringify([{ driver: 'simulated', count: 2, idPrefix: 'sim', shape: { cpu: '64', memory: '256Gi', gpus: { count: 4, model: 'T4' } } }]);

/**
 * The stores to run on: SQLite always; PostgreSQL when it answers, and also when it does
 * not but CI=true (the tests then fail instead of skipping).
 */
export async function storeKinds(): Promise<StoreKind[]> {
  const pg = await probePostgres(PG_URL);
  return pg.ok || isCI ? ['sqlite', 'postgres'] : ['sqlite'];
}

export interface Res<T = any> {
  status: number;
  headers: Headers;
  text: string;
  json: T;
}

/** One platform (real store, simulated nodes) driven over HTTP. */
export class TenancyPlatform {
  private constructor(
    readonly platform: Platform,
    readonly baseUrl: string,
    readonly adminToken: string,
    private readonly dataDir: string,
    private readonly db: ScratchDatabase | undefined,
  ) {}

  static async start(kind: StoreKind, env: Record<string, string> = {}, overrides: PlatformOverrides = {}): Promise<TenancyPlatform> {
    const dataDir = await mkdtemp(join(tmpdir(), 'ap-tenancy-'));
    const db = kind === 'postgres' ? await createScratchDatabase(PG_URL) : undefined;
    const adminToken = `adm_${randomBytes(16).toString('hex')}`;
    const config = loadConfig({
      AGENT_PLATFORM_PORT: '0',
      AGENT_PLATFORM_LOG_LEVEL: 'silent',
      AGENT_PLATFORM_DATA_DIR: dataDir,
      AGENT_PLATFORM_ADMIN_TOKEN: adminToken,
      AGENT_PLATFORM_NODES: SIMULATED_NODES,
      AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
      AGENT_PLATFORM_STOP_GRACE_MS: '0',
      AGENT_PLATFORM_RATE_LIMIT_RPS: '100000',
      AGENT_PLATFORM_RATE_LIMIT_BURST: '100000',
      AGENT_PLATFORM_ADMISSION_INTERVAL_MS: '200',
      AGENT_PLATFORM_USAGE_INTERVAL_MS: '1000',
      ...(db ? { AGENT_PLATFORM_DATABASE_URL: db.url } : {}),
      ...env,
    });
    const platform = await buildPlatform(config, overrides);
    const address = await platform.start();
    return new TenancyPlatform(platform, address.replace('[::1]', '127.0.0.1'), adminToken, dataDir, db);
  }

  async request<T = any>(method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Res<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? this.adminToken : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), signal: opts.signal });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json: json as T };
  }

  async expectStatus<T = any>(status: number, method: string, path: string, opts: Parameters<TenancyPlatform['request']>[2] = {}): Promise<Res<T>> {
    const r = await this.request<T>(method, path, opts);
    if (r.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${r.status}: ${r.text}`);
    return r;
  }

  async createTenant(id: string, extra: Record<string, unknown> = {}): Promise<void> {
    await this.expectStatus(201, 'POST', '/api/v1/tenants', { body: { id, ...extra } });
  }

  /** A new key of `role` in `tenant`; returns the secret (and the expiry the server stored, when it has one). */
  async createKey(tenant: string, role: string, extra: Record<string, unknown> = {}): Promise<{ key: string; id: string; expiresAt?: string }> {
    const r = await this.expectStatus<{ key: string; id: string; expiresAt?: string }>(201, 'POST', `/api/v1/tenants/${tenant}/keys`, { body: { name: `${role}-key`, role, ...extra } });
    return { key: r.json.key, id: r.json.id, ...(r.json.expiresAt !== undefined ? { expiresAt: r.json.expiresAt } : {}) };
  }

  async createAgent(token: string, body: Record<string, unknown>): Promise<Res> {
    return this.request('POST', '/api/v1/agents', { token, body: { image: 'sim/sleep', command: ['sleep', 'infinity'], ...body } });
  }

  async waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async phaseOf(token: string, id: string): Promise<{ phase: string; reason?: string }> {
    const r = await this.expectStatus(200, 'GET', `/api/v1/agents/${id}`, { token });
    return r.json.status;
  }

  async waitPhase(token: string, id: string, phase: string, timeoutMs = 15_000): Promise<void> {
    await this.waitFor(`agent ${id} ${phase}`, async () => ((await this.phaseOf(token, id)).phase === phase ? true : undefined), timeoutMs);
  }

  async close(): Promise<void> {
    try {
      await this.platform.close();
    } finally {
      await this.db?.drop().catch(() => undefined);
      await rm(this.dataDir, { recursive: true, force: true });
    }
  }
}

export const uid = (prefix: string): string => `${prefix}-${randomBytes(3).toString('hex')}`;
