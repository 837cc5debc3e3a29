/**
 * GET /metrics and GET /api/v1/agents/{id}/metrics through the real wiring (buildPlatform,
 * SQLite in a temp dir) with Fastify's inject: no Docker needed, since nothing is started.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';

const ADMIN = 'a'.repeat(24);
const dirs: string[] = [];
const platforms: Platform[] = [];

async function platform(env: Record<string, string> = {}): Promise<Platform> {
  const dir = mkdtempSync(join(tmpdir(), 'ap-metrics-endpoint-'));
  dirs.push(dir);
  const config = loadConfig({ AGENT_PLATFORM_DATA_DIR: dir, AGENT_PLATFORM_ADMIN_TOKEN: ADMIN, AGENT_PLATFORM_PORT: '0', AGENT_PLATFORM_LOG_LEVEL: 'silent', ...env });
  const p = await buildPlatform(config);
  platforms.push(p);
  return p;
}

afterAll(async () => {
  for (const p of platforms) await p.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('GET /metrics', () => {
  it('is open by default and serves the Prometheus text format with agent counts from the store', async () => {
    const p = await platform();
    const created = await p.app.inject({
      method: 'POST',
      url: '/api/v1/agents',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      payload: { name: 'one', image: 'agent-platform/busybox:latest' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const res = await p.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toContain('# TYPE agent_platform_agents gauge');
    expect(res.body).toMatch(/^agent_platform_agents\{tenant="default",phase="Pending"\} 1$/m);
    expect(res.body).toMatch(/^agent_platform_http_request_duration_seconds_count\{method="POST",route="\/api\/v1\/agents",status="201"\} 1$/m);
    expect(res.body).toMatch(/^agent_platform_process_cpu_seconds_total /m);
    expect(res.body).toMatch(/^# TYPE container_cpu_usage_seconds_total counter$/m);
  });

  it('needs the bearer token when AGENT_PLATFORM_METRICS_TOKEN is set', async () => {
    const token = 'm'.repeat(32);
    const p = await platform({ AGENT_PLATFORM_METRICS_TOKEN: token });
    expect((await p.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    expect((await p.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${'x'.repeat(32)}` } })).statusCode).toBe(401);
    expect((await p.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ADMIN}` } })).statusCode).toBe(401);
    const ok = await p.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('agent_platform_ready');
  });

  it('is documented in OpenAPI as unauthenticated', async () => {
    const p = await platform();
    const doc = (await p.app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, { summary: string; security?: unknown[] }>> };
    expect(doc.paths['/metrics']?.get?.security).toEqual([]);
    expect(doc.paths['/metrics']?.get?.summary).toMatch(/No authentication unless AGENT_PLATFORM_METRICS_TOKEN/);
    expect(doc.paths['/api/v1/agents/{id}/metrics']?.get).toBeDefined();
  });
});

describe('GET /api/v1/agents/{id}/metrics', () => {
  it('returns an empty history for an agent not sampled yet, 404 for an unknown one, 400 for a bad range', async () => {
    const p = await platform();
    const auth = { authorization: `Bearer ${ADMIN}` };
    const created = await p.app.inject({ method: 'POST', url: '/api/v1/agents', headers: { ...auth, 'content-type': 'application/json' }, payload: { name: 'two', image: 'x' } });
    const id = (created.json() as { id: string }).id;
    const res = await p.app.inject({ method: 'GET', url: `/api/v1/agents/${id}/metrics?range=30s`, headers: auth });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ agentId: id, intervalMs: 10_000, retentionMs: 3_600_000, points: [] });
    const get = await p.app.inject({ method: 'GET', url: `/api/v1/agents/${id}`, headers: auth });
    expect((get.json() as { usage?: unknown }).usage).toBeUndefined();
    expect((await p.app.inject({ method: 'GET', url: '/api/v1/agents/zzzzzzzzzzzz/metrics', headers: auth })).statusCode).toBe(404);
    for (const range of ['15', '2d', '25h', '0s']) {
      const bad = await p.app.inject({ method: 'GET', url: `/api/v1/agents/${id}/metrics?range=${range}`, headers: auth });
      expect(bad.statusCode, `range=${range}`).toBe(400);
    }
    expect((await p.app.inject({ method: 'GET', url: `/api/v1/agents/${id}/metrics` })).statusCode).toBe(401);
  });
});
