import { describe, expect, it } from 'vitest';
import type { ContainerSpec, RuntimeEvent } from '../runtime.js';
import { SimulatedCluster } from './simulated-cluster.js';

const NODES = 5_000;
const AGENTS = 100_000;

const spec = (agentId: string): ContainerSpec => ({
  agentId,
  tenantId: 'bench',
  name: agentId,
  image: 'agent-samples/simple-python:latest',
  command: ['python3', '-m', 'agent'],
  args: [],
  env: { MODEL: 'small' },
  cpuLimitMillicores: 200,
  cpuRequestMillicores: 100,
  memoryLimitMiB: 256,
  pidsLimit: 64,
  tmpSizeMiB: 16,
  dataSizeMiB: 16,
  gpuDeviceIds: [],
  labels: {},
});

describe('SimulatedCluster at scale', () => {
  it(`creates and starts ${AGENTS.toLocaleString('en')} agents on ${NODES.toLocaleString('en')} nodes quickly, with every node watched`, async () => {
    globalThis.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const heapBefore = process.memoryUsage().heapUsed;
    // 1% of runs fail somewhere in the next 10 minutes: those sit in the shared timer heap.
    const cluster = new SimulatedCluster({ nodes: NODES, failureRate: 0.01, failureWindowMs: 600_000, seed: 5 });
    const runtimes = cluster.runtimes();
    let events = 0;
    const abort = new AbortController();
    for (const r of runtimes) r.watch((_e: RuntimeEvent) => void events++, abort.signal);

    const began = performance.now();
    // Round-robin placement, each node's agents created and started in order, all nodes at once.
    await Promise.all(
      runtimes.map(async (runtime, node) => {
        for (let i = node; i < AGENTS; i += NODES) {
          const id = await runtime.create(spec(`agent-${i}`));
          await runtime.start(id);
        }
      }),
    );
    const createStartMs = performance.now() - began;

    const inspectBegan = performance.now();
    const sample = await runtimes[123]!.list();
    for (const runtime of runtimes) expect((await runtime.list()).length).toBe(AGENTS / NODES);
    const listAllMs = performance.now() - inspectBegan;
    await new Promise((resolve) => setImmediate(resolve));
    const rssAfter = process.memoryUsage().rss;
    const heapAfter = process.memoryUsage().heapUsed;
    const stats = cluster.stats();

    console.log(
      [
        `simulated scale: ${AGENTS} create+start on ${NODES} nodes in ${createStartMs.toFixed(0)} ms`,
        `(${((createStartMs * 1000) / AGENTS).toFixed(1)} µs per agent);`,
        `list() of all ${NODES} nodes in ${listAllMs.toFixed(0)} ms;`,
        `RSS +${((rssAfter - rssBefore) / 2 ** 20).toFixed(0)} MiB, heap +${((heapAfter - heapBefore) / 2 ** 20).toFixed(0)} MiB;`,
        `${events} events delivered; ${stats.pendingTimers} pending exits`,
      ].join(' '),
    );

    expect(stats).toMatchObject({ nodes: NODES, containers: AGENTS, running: AGENTS });
    expect(sample.every((c) => c.state === 'running' && c.agentId.startsWith('agent-'))).toBe(true);
    // create + start for each agent, all on the watchers by now.
    expect(events).toBe(2 * AGENTS);
    // About 1% fail later; each of those has one heap entry and no Node timer.
    expect(stats.pendingTimers).toBeGreaterThan(AGENTS * 0.005);
    expect(stats.pendingTimers).toBeLessThan(AGENTS * 0.02);
    // Generous: about 1 s here when idle; shared CI machines and parallel test files are slower.
    expect(createStartMs).toBeLessThan(15_000);
    expect(heapAfter - heapBefore).toBeLessThan(400 * 2 ** 20);
    abort.abort();
    await cluster.close();
  }, 60_000);
});
