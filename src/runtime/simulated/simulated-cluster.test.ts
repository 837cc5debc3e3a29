import { describe, expect, it } from 'vitest';
import { InputError } from '../../domain/errors.js';
import type { ContainerSpec, RuntimeEvent } from '../runtime.js';
import { SimulatedCluster, type SimulatedClusterOptions } from './simulated-cluster.js';

const spec = (agentId: string, script: string, env: Record<string, string> = {}): ContainerSpec => ({
  agentId,
  tenantId: 't',
  name: agentId,
  image: 'sim/agent:1',
  command: ['sh', '-c'],
  args: [script],
  env,
  cpuLimitMillicores: 100,
  cpuRequestMillicores: 100,
  memoryLimitMiB: 64,
  pidsLimit: 64,
  tmpSizeMiB: 16,
  dataSizeMiB: 16,
  gpuDeviceIds: [],
  labels: {},
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts `count` agents spread over the cluster's nodes; returns exit codes by agent id once `settleMs` passed. */
async function runAgents(options: SimulatedClusterOptions, count: number, script: string, settleMs: number): Promise<Map<string, number | undefined>> {
  const cluster = new SimulatedCluster(options);
  const runtimes = cluster.runtimes();
  const ids: { agentId: string; node: number; id: string }[] = [];
  for (let i = 0; i < count; i++) {
    const runtime = runtimes[i % runtimes.length]!;
    const agentId = `agent-${i}`;
    const id = await runtime.create(spec(agentId, script));
    await runtime.start(id);
    ids.push({ agentId, node: i % runtimes.length, id });
  }
  await sleep(settleMs);
  const codes = new Map<string, number | undefined>();
  for (const { agentId, node, id } of ids) codes.set(agentId, (await runtimes[node]!.inspect(id))?.exitCode);
  await cluster.close();
  return codes;
}

describe('SimulatedCluster', () => {
  it('names nodes from the prefix and validates its options, naming the bad one', () => {
    expect(new SimulatedCluster({ nodes: 3, idPrefix: 'kwok-' }).nodeIds()).toEqual(['kwok-00001', 'kwok-00002', 'kwok-00003']);
    expect(new SimulatedCluster({ nodes: 100_000 }).nodeIds()[99_999]).toBe('sim-100000');
    const bad: [SimulatedClusterOptions, string][] = [
      [{ nodes: 0 }, 'nodes'],
      [{ nodes: 1, failureRate: 2 }, 'failureRate'],
      [{ nodes: 1, defaultRunMs: -1 }, 'defaultRunMs'],
      [{ nodes: 1, shape: { cpuMillicores: 1.5, memoryMiB: 10 } }, 'cpuMillicores'],
      [{ nodes: [{ cpuMillicores: 1_000, memoryMiB: 0 }] }, 'nodes[0].memoryMiB'],
      [{ nodes: 1, failureExitCode: 0 }, 'failureExitCode'],
    ];
    for (const [options, field] of bad) {
      expect(() => new SimulatedCluster(options)).toThrow(InputError);
      expect(() => new SimulatedCluster(options)).toThrow(field);
    }
  });

  it('fails a seeded fraction of runs, the same agents for the same seed, others for another seed', async () => {
    const options = { nodes: 7, failureRate: 0.3, failureWindowMs: 100, seed: 7 };
    const first = await runAgents(options, 300, 'sleep infinity', 250);
    const again = await runAgents(options, 300, 'sleep infinity', 250);
    const otherSeed = await runAgents({ ...options, seed: 8 }, 300, 'sleep infinity', 250);
    const failed = (codes: Map<string, number | undefined>): string[] => [...codes].filter(([, code]) => code !== undefined).map(([id]) => id);
    expect(failed(again)).toEqual(failed(first));
    expect(failed(otherSeed)).not.toEqual(failed(first));
    // 30% of 300, with room for chance (sd about 8).
    expect(failed(first).length).toBeGreaterThan(55);
    expect(failed(first).length).toBeLessThan(125);
    // A failed run exits with failureExitCode (1); the rest keep running.
    expect(new Set([...first.values()])).toEqual(new Set([undefined, 1]));
  });

  it('fails a run with a finite script inside its run time, and lets the rest succeed', async () => {
    const codes = await runAgents({ nodes: 3, failureRate: 0.5, seed: 3 }, 60, 'sleep 0.15', 400);
    const values = [...codes.values()];
    expect(values.every((c) => c === 0 || c === 1)).toBe(true);
    expect(values.filter((c) => c === 1).length).toBeGreaterThan(10);
    expect(values.filter((c) => c === 0).length).toBeGreaterThan(10);
  });

  it('lets SIM_FAIL_RATE override the cluster rate per container, and draws again on every run', async () => {
    const cluster = new SimulatedCluster({ nodes: 1, failureRate: 1, seed: 11 });
    const [runtime] = cluster.runtimes();
    const never = await runtime!.create(spec('never', 'exit 0', { SIM_FAIL_RATE: '0' }));
    const coin = await runtime!.create(spec('coin', 'exit 0', { SIM_FAIL_RATE: '0.5' }));
    const outcomes: (number | undefined)[] = [];
    for (let run = 0; run < 24; run++) {
      await runtime!.start(never);
      await runtime!.start(coin);
      await sleep(5);
      expect((await runtime!.inspect(never))?.exitCode).toBe(0);
      outcomes.push((await runtime!.inspect(coin))?.exitCode);
    }
    expect(new Set(outcomes)).toEqual(new Set([0, 1]));
    await cluster.close();
  });

  it('fires exits from one shared heap, in due order, and forgets cancelled ones', async () => {
    const cluster = new SimulatedCluster({ nodes: 4 });
    const runtimes = cluster.runtimes();
    const deaths: string[] = [];
    const abort = new AbortController();
    for (const r of runtimes) r.watch((e: RuntimeEvent) => e.action === 'die' && deaths.push(e.agentId), abort.signal);
    // Durations deliberately out of creation order, 40 ms apart so timer jitter cannot reorder them.
    const order = [5, 1, 4, 0, 3, 2];
    const ids: string[] = [];
    for (const [i, slot] of order.entries()) {
      const runtime = runtimes[i % 4]!;
      const id = await runtime.create(spec(`a${slot}`, `sleep ${(slot + 1) * 0.04}`));
      await runtime.start(id);
      ids.push(id);
    }
    const stopped = await runtimes[0]!.create(spec('stopped', 'sleep 0.1'));
    await runtimes[0]!.start(stopped);
    expect(cluster.stats().pendingTimers).toBe(7);
    await runtimes[0]!.stop(stopped, 0);
    expect(cluster.stats().pendingTimers).toBe(6);
    await sleep(400);
    expect(deaths).toEqual(['stopped', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
    expect(cluster.stats()).toMatchObject({ nodes: 4, containers: 7, running: 0, pendingTimers: 0 });
    abort.abort();
    await cluster.close();
  });

  it('treats images matching missingImages as absent', async () => {
    const cluster = new SimulatedCluster({ nodes: 1, missingImages: (image) => image.startsWith('private/') });
    const [runtime] = cluster.runtimes();
    await expect(runtime!.create({ ...spec('a', 'true'), image: 'private/x:1' })).rejects.toMatchObject({ name: 'ImageNotFoundError', image: 'private/x:1' });
    await expect(runtime!.create({ ...spec('b', 'true'), image: 'missing/is-fine-here:1' })).resolves.toEqual(expect.any(String));
    await cluster.close();
  });

  it('refuses a name held by another agent, and rejects bad SIM_* env at create', async () => {
    const cluster = new SimulatedCluster({ nodes: 1 });
    const [runtime] = cluster.runtimes();
    await expect(runtime!.create(spec('x', 'true', { SIM_RUN_MS: 'later' }))).rejects.toMatchObject({ code: 'SIMULATION_ENV_INVALID' });
    expect(await runtime!.list()).toEqual([]);
    await cluster.close();
  });

  it('wipeNode loses every container of the node without events; the others keep theirs', async () => {
    const cluster = new SimulatedCluster({ nodes: 2 });
    const [a, b] = cluster.runtimes();
    const events: RuntimeEvent[] = [];
    const abort = new AbortController();
    a!.watch((e) => events.push(e), abort.signal);
    const onA = await a!.create(spec('a', 'sleep 0.05'));
    await a!.start(onA);
    const onB = await b!.create(spec('b', 'sleep 30'));
    await sleep(10);
    events.length = 0;
    cluster.wipeNode('sim-00001');
    await sleep(100);
    expect(events).toEqual([]);
    expect(await a!.list()).toEqual([]);
    expect(await b!.inspect(onB)).toMatchObject({ state: 'created' });
    expect(cluster.stats().pendingTimers).toBe(0);
    abort.abort();
    await cluster.close();
  });

  it('rejects calls after close', async () => {
    const cluster = new SimulatedCluster({ nodes: 1 });
    const [runtime] = cluster.runtimes();
    await cluster.close();
    await expect(runtime!.ping()).rejects.toMatchObject({ code: 'RUNTIME_UNAVAILABLE' });
    expect(() => cluster.runtimes()).toThrow(/closed/);
  });
});
