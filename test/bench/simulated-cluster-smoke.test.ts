/**
 * CI-sized bench/simulated-cluster: 2,000 agents created through the real HTTP API onto 200
 * simulated nodes must all reach Running, with no node over-committed. The time bound is
 * generous (a loaded CI runner); the full bench measures speed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { runHttpLoad } from '../../bench/lib/http-load-client.js';
import { simulatedPlatformEnv } from '../helpers/simulated-platform-env.js';

const AGENTS = 2_000;
const NODES = 200;
const TOKEN = 'simulated-cluster-smoke-token';

interface NodeView {
  id: string;
  allocatable: { cpuMillicores: number; memoryMiB: number; maxAgents: number };
  allocated: { cpuMillicores: number; memoryMiB: number; agents: number };
}

describe('simulated cluster smoke (2,000 agents, 200 nodes, real HTTP)', () => {
  let dataDir: string;
  let platform: Platform;
  let baseUrl: string;
  const running = new Set<string>();

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ap-sim-smoke-'));
    platform = await buildPlatform(
      // Small nodes (2 CPU, 1Gi, 16 agents) so that 2,000 agents fill most of the pool:
      // over-commit would show.
      loadConfig(simulatedPlatformEnv({ dataDir, token: TOKEN, nodes: { count: NODES, maxAgents: 16, shape: { cpu: '2', memory: '1Gi' } } })),
    );
    platform.bus.subscribe((e) => {
      if (e.objectKind === 'Agent' && e.reason === 'PhaseChanged' && (e.data as { to?: string } | undefined)?.to === 'Running') running.add(e.objectId);
    });
    baseUrl = await platform.start();
  });

  afterAll(async () => {
    await platform?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('creates every agent through POST /api/v1/agents and runs all of them within bounds', async () => {
    const t0 = Date.now();
    const load = await runHttpLoad({
      baseUrl,
      path: '/api/v1/agents',
      token: TOKEN,
      count: AGENTS,
      concurrency: 64,
      // 100m x 16 = 1.6 CPU and 48Mi x 16 = 768Mi per full node: cpu and agent count bind.
      bodyTemplate: { image: 'agent-platform/sim:latest', resources: { cpu: '100m', memory: '48Mi' } },
      namePrefix: 'smoke',
    });
    expect(load.failures).toEqual({});
    const ids = load.ids.filter((id) => id !== '');
    expect(ids).toHaveLength(AGENTS);
    expect(new Set(ids).size).toBe(AGENTS);

    while (!ids.every((id) => running.has(id)) && Date.now() - t0 < 90_000) await sleep(50);
    expect(ids.filter((id) => !running.has(id))).toEqual([]);
    // Generous: about 5 s here; a CI runner under load may be many times slower.
    expect(Date.now() - t0).toBeLessThan(90_000);

    // The store agrees with the events: every agent Running, on a node.
    let cursor: string | undefined;
    const phases = new Map<string, number>();
    const perNode = new Map<string, number>();
    do {
      const res = await fetch(`${baseUrl}/api/v1/agents?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status).toBe(200);
      const page = (await res.json()) as { items: { status: { phase: string; node?: string } }[]; nextCursor?: string };
      for (const a of page.items) {
        phases.set(a.status.phase, (phases.get(a.status.phase) ?? 0) + 1);
        if (a.status.node) perNode.set(a.status.node, (perNode.get(a.status.node) ?? 0) + 1);
      }
      cursor = page.nextCursor;
    } while (cursor);
    expect(Object.fromEntries(phases)).toEqual({ Running: AGENTS });
    expect(Math.max(...perNode.values())).toBeLessThanOrEqual(16);
  }, 120_000);

  it('over-commits no node: allocated <= allocatable everywhere, and the books add up', async () => {
    const res = await fetch(`${baseUrl}/api/v1/nodes`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const { items } = (await res.json()) as { items: NodeView[] };
    expect(items).toHaveLength(NODES);
    const over = items.filter(
      (n) => n.allocated.cpuMillicores > n.allocatable.cpuMillicores || n.allocated.memoryMiB > n.allocatable.memoryMiB || n.allocated.agents > n.allocatable.maxAgents,
    );
    expect(over.map((n) => n.id)).toEqual([]);
    expect(items.reduce((s, n) => s + n.allocated.agents, 0)).toBe(AGENTS);
    expect(items.reduce((s, n) => s + n.allocated.cpuMillicores, 0)).toBe(AGENTS * 100);
    expect(items.reduce((s, n) => s + n.allocated.memoryMiB, 0)).toBe(AGENTS * 48);
  });
});
