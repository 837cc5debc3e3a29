/**
 * Creates wait at the API while the controller is behind (AGENT_PLATFORM_CREATE_BACKLOG_LIMIT),
 * over real HTTP against a platform on SQLite with simulated nodes. The controller is held
 * behind on purpose: the placer (the one override) waits until the test lets it go, with
 * reconcile concurrency 1, so reconcile keys pile up in the work queue.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Placement, Placer } from '../../src/controllers/placer.js';
import type { Agent } from '../../src/domain/agent.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { simulatedPlatformEnv } from '../helpers/simulated-platform-env.js';

const TOKEN = 'create-backpressure-test-token';

/** Places every agent on the one simulated node, but only while the gate is open. */
class GatedPlacer implements Placer {
  nodeId = '';
  #open = false;
  #waiters: (() => void)[] = [];
  placed = 0;

  async place(agent: Agent, signal?: AbortSignal): Promise<Placement> {
    while (!this.#open) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
      signal?.throwIfAborted();
    }
    this.placed++;
    return { ok: true, nodeId: this.nodeId, gpuIds: [], message: `assigned to ${this.nodeId} for agent ${agent.name}` };
  }
  release(): void {}
  open(): void {
    this.#open = true;
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

interface Running {
  platform: Platform;
  baseUrl: string;
  placer: GatedPlacer;
  dataDir: string;
}

let current: Running | undefined;

async function start(env: Record<string, string>): Promise<Running> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ap-backpressure-'));
  const placer = new GatedPlacer();
  const platform = await buildPlatform(
    loadConfig(
      simulatedPlatformEnv({
        dataDir,
        token: TOKEN,
        nodes: { count: 1, shape: { cpu: '64', memory: '256Gi' } },
        env: { AGENT_PLATFORM_RECONCILE_CONCURRENCY: '1', ...env },
      }),
    ),
    { placer },
  );
  placer.nodeId = platform.runtimes.all()[0]!.nodeId;
  const baseUrl = (await platform.start()).replace('[::1]', '127.0.0.1');
  current = { platform, baseUrl, placer, dataDir };
  return current;
}

afterEach(async () => {
  if (!current) return;
  current.placer.open();
  await current.platform.close();
  rmSync(current.dataDir, { recursive: true, force: true });
  current = undefined;
});

const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

function create(baseUrl: string, name: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${baseUrl}/api/v1/agents`, { method: 'POST', headers, body: JSON.stringify({ name, image: 'agent-platform/sim:latest' }), ...(signal ? { signal } : {}) });
}

async function metric(baseUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`, { headers })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not exported`);
  return Number(line.split(' ')[1]);
}

async function agentNames(baseUrl: string): Promise<string[]> {
  const res = await fetch(`${baseUrl}/api/v1/agents?limit=100`, { headers });
  return ((await res.json()) as { items: { name: string }[] }).items.map((a) => a.name).sort();
}

/** Settles a promise into something the test can look at without awaiting it. */
function track<T>(p: Promise<T>): { settled: boolean; value?: T; error?: unknown } {
  const t: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  p.then(
    (value) => Object.assign(t, { settled: true, value }),
    (error: unknown) => Object.assign(t, { settled: true, error }),
  );
  return t;
}

describe('create backpressure (real HTTP, SQLite, simulated nodes)', () => {
  it('holds creates while the backlog is at the limit, drops an abandoned one without a trace, and lets the rest through as the controller catches up', async () => {
    const { baseUrl, placer } = await start({ AGENT_PLATFORM_CREATE_BACKLOG_LIMIT: '2', AGENT_PLATFORM_CREATE_BACKLOG_WAIT_MS: '60000' });
    // a-1 is taken by the one reconcile (blocked in the placer); a-2 and a-3 fill the backlog.
    for (const name of ['a-1', 'a-2', 'a-3']) expect((await create(baseUrl, name)).status).toBe(201);
    await sleep(50);

    const held = track(create(baseUrl, 'held'));
    const abandon = new AbortController();
    const abandoned = track(create(baseUrl, 'abandoned', abandon.signal));
    await sleep(300);
    expect(held.settled).toBe(false);
    expect(abandoned.settled).toBe(false);
    expect(await metric(baseUrl, 'agent_platform_create_backpressure_waiting')).toBe(2);

    abandon.abort();
    await sleep(100);
    expect(await metric(baseUrl, 'agent_platform_create_backpressure_waiting')).toBe(1);

    placer.open();
    for (let i = 0; i < 200 && !held.settled; i++) await sleep(25);
    expect((held.value as Response | undefined)?.status).toBe(201);
    // Every agent acknowledged is there and placed; the abandoned one never was created.
    expect(await agentNames(baseUrl)).toEqual(['a-1', 'a-2', 'a-3', 'held']);
    for (let i = 0; i < 200 && placer.placed < 4; i++) await sleep(25);
    expect(placer.placed).toBe(4);
    expect(await metric(baseUrl, 'agent_platform_create_backpressure_waiting')).toBe(0);
    // 'held' waited; so may 'a-3', if it shared the first reading with the others.
    expect(await metric(baseUrl, 'agent_platform_create_backpressure_wait_seconds_count')).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it('answers a held create 503 SHUTTING_DOWN when the platform closes, and closes at once', async () => {
    const running = await start({ AGENT_PLATFORM_CREATE_BACKLOG_LIMIT: '1', AGENT_PLATFORM_CREATE_BACKLOG_WAIT_MS: '60000' });
    for (const name of ['d-1', 'd-2']) expect((await create(running.baseUrl, name)).status).toBe(201);
    await sleep(50);
    const held = track(create(running.baseUrl, 'd-held'));
    await sleep(200);
    expect(held.settled).toBe(false);
    current = undefined; // closed here, not in afterEach
    const t0 = Date.now();
    await running.platform.close();
    expect(Date.now() - t0).toBeLessThan(5_000);
    rmSync(running.dataDir, { recursive: true, force: true });
    for (let i = 0; i < 100 && !held.settled; i++) await sleep(20);
    const res = held.value as Response;
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('SHUTTING_DOWN');
  }, 30_000);

  it('lets a held create go ahead after AGENT_PLATFORM_CREATE_BACKLOG_WAIT_MS when the controller stays behind', async () => {
    const { baseUrl } = await start({ AGENT_PLATFORM_CREATE_BACKLOG_LIMIT: '1', AGENT_PLATFORM_CREATE_BACKLOG_WAIT_MS: '400' });
    for (const name of ['b-1', 'b-2']) expect((await create(baseUrl, name)).status).toBe(201);
    await sleep(50);
    const t0 = Date.now();
    const res = await create(baseUrl, 'b-3');
    expect(res.status).toBe(201);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    expect(await agentNames(baseUrl)).toEqual(['b-1', 'b-2', 'b-3']);
  }, 30_000);

  it('with AGENT_PLATFORM_CREATE_BACKLOG_LIMIT=0 never holds a create', async () => {
    const { baseUrl } = await start({ AGENT_PLATFORM_CREATE_BACKLOG_LIMIT: '0' });
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) expect((await create(baseUrl, `c-${i}`)).status).toBe(201);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await metric(baseUrl, 'agent_platform_create_backpressure_wait_seconds_count')).toBe(0);
    expect((await agentNames(baseUrl)).length).toBe(20);
  }, 30_000);
});
