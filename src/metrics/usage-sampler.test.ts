import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Agent, AgentStatus } from '../domain/agent.js';
import { ManualClock } from '../domain/clock.js';
import type { Runtime } from '../runtime/runtime.js';
import { RuntimeRegistry } from '../runtime/runtime-registry.js';
import { openSqliteStore } from '../store/sqlite-store.js';
import type { Store } from '../store/store.js';
import type { ContainerUsage } from './cgroup/container-usage.js';
import { UsageSampler, type EndedRun, type UsageCollector } from './usage-sampler.js';

const MiB = 1024 * 1024;

/** A collector that answers from a table the test sets per round, and records what it was asked. */
class TableCollector implements UsageCollector {
  readonly asked: string[][] = [];
  table = new Map<string, { cpuSeconds: number; workingSetBytes: number }>();
  constructor(private readonly clock: ManualClock) {}
  async collect(ids: readonly string[]): Promise<Map<string, ContainerUsage>> {
    this.asked.push([...ids]);
    const out = new Map<string, ContainerUsage>();
    for (const id of ids) {
      const row = this.table.get(id);
      if (!row) continue;
      out.set(id, {
        containerId: id,
        source: 'cgroup',
        timestampMs: this.clock.now(),
        cpuUsageSeconds: row.cpuSeconds,
        memoryUsageBytes: row.workingSetBytes + MiB,
        memoryWorkingSetBytes: row.workingSetBytes,
        memoryLimitBytes: null,
        cpuCfsPeriods: 0,
        cpuCfsThrottledPeriods: 0,
        cpuCfsThrottledSeconds: 0,
        pids: 1,
        oomKills: 0,
      });
    }
    return out;
  }
}

describe('UsageSampler', () => {
  let store: Store;
  let clock: ManualClock;
  let collector: TableCollector;
  let sampler: UsageSampler;
  const docker = { driver: 'docker', nodeId: 'n1' } as Runtime;
  const simulated = { driver: 'simulated', nodeId: 'sim' } as Runtime;

  beforeEach(async () => {
    store = openSqliteStore(':memory:');
    await store.migrate();
    clock = new ManualClock(1_800_000_000_000);
    collector = new TableCollector(clock);
    sampler = new UsageSampler({
      store,
      runtimes: new RuntimeRegistry([docker, simulated]),
      collectorFor: (r) => (r.driver === 'docker' ? collector : undefined),
      intervalMs: 10_000,
      retentionMs: 60_000,
      clock,
    });
  });
  afterEach(async () => {
    await sampler.stop();
    await store.close();
  });

  async function addAgent(id: string, status: Partial<AgentStatus>, tenantId = 't1'): Promise<Agent> {
    const { agent } = await store.createAgent({
      id,
      tenantId,
      name: `name-${id}`,
      labels: {},
      spec: {
        image: 'x',
        command: [],
        args: [],
        env: {},
        resources: { cpuMillicores: 250, memoryMiB: 64, gpu: 0, cpuLimitMillicores: 500, memoryLimitMiB: 128 },
        restartPolicy: 'Always',
        schedulingPolicy: 'spread',
        priority: 0,
        nodeSelector: {},
        tolerations: [],
      },
      desired: 'running',
      status: { phase: 'Pending', restarts: 0, phaseSince: clock.now() },
      createdAt: clock.now(),
    });
    return store.updateAgent(id, agent.version, { status: { ...agent.status, ...status }, updatedAt: clock.now() });
  }

  const round = async (advanceMs = 10_000): Promise<void> => {
    clock.advance(advanceMs);
    await sampler.sampleOnce();
  };

  it('samples only running agents with a container on nodes that have a collector', async () => {
    await addAgent('run1', { phase: 'Running', node: 'n1', containerId: 'c1' });
    await addAgent('pend1', { phase: 'Pending', node: 'n1', restarts: 4 });
    await addAgent('sim1', { phase: 'Running', node: 'sim', containerId: 's1' });
    await addAgent('done1', { phase: 'Succeeded', node: 'n1', containerId: 'c9' });
    collector.table.set('c1', { cpuSeconds: 1, workingSetBytes: 10 * MiB });
    await round();
    expect(collector.asked).toEqual([['c1']]);
    const views = sampler.current();
    expect(views.map((v) => v.agentId).sort()).toEqual(['pend1', 'run1', 'sim1']);
    expect(views.find((v) => v.agentId === 'pend1')).toMatchObject({ restarts: 4, node: 'n1', cpuRequestMillicores: 250 });
    expect(views.find((v) => v.agentId === 'pend1')?.usage).toBeUndefined();
    expect(views.find((v) => v.agentId === 'run1')?.usage?.cpuUsageSeconds).toBe(1);
    expect(sampler.latest('sim1')).toBeUndefined();
    expect(sampler.latest('done1')).toBeUndefined();
  });

  it('reads in full only the agents whose record changed since the last round', async () => {
    await addAgent('run1', { phase: 'Running', node: 'n1', containerId: 'c1' });
    const b = await addAgent('run2', { phase: 'Running', node: 'n1', containerId: 'c2' });
    const read: string[][] = [];
    const getAgents = store.getAgents.bind(store);
    store.getAgents = async (ids) => {
      read.push([...ids]);
      return getAgents(ids);
    };
    await round();
    expect(read.flat().sort()).toEqual(['run1', 'run2']);
    read.length = 0;
    await round();
    expect(read.flat()).toEqual([]);
    expect(collector.asked.at(-1)?.sort()).toEqual(['c1', 'c2']);
    await store.updateAgent('run2', b.version, { status: { ...b.status, restarts: 3 }, updatedAt: clock.now() });
    await round();
    expect(read.flat()).toEqual(['run2']);
    expect(sampler.current().find((v) => v.agentId === 'run2')?.restarts).toBe(3);
    expect(sampler.current().map((v) => v.agentId).sort()).toEqual(['run1', 'run2']);
  });

  it('computes CPU cores from two samples of one container, and none across a counter reset or a new container', async () => {
    const a = await addAgent('run1', { phase: 'Running', node: 'n1', containerId: 'c1' });
    collector.table.set('c1', { cpuSeconds: 100, workingSetBytes: 64 * MiB });
    await round();
    const first = sampler.latest('run1');
    expect(first).toEqual({ cpuCores: null, memoryWorkingSetBytes: 64 * MiB, memoryLimitBytes: 128 * MiB, cpuLimitCores: 0.5, sampledAt: clock.now() });

    collector.table.set('c1', { cpuSeconds: 105, workingSetBytes: 65 * MiB });
    await round(); // 5 CPU seconds in 10 s
    expect(sampler.latest('run1')?.cpuCores).toBeCloseTo(0.5, 6);

    collector.table.set('c1', { cpuSeconds: 2, workingSetBytes: 1 * MiB }); // restarted in place
    await round();
    expect(sampler.latest('run1')?.cpuCores).toBeNull();

    await store.updateAgent('run1', a.version, { status: { ...a.status, containerId: 'c2' }, updatedAt: clock.now() });
    collector.table.set('c2', { cpuSeconds: 500, workingSetBytes: 1 * MiB });
    await round();
    expect(sampler.latest('run1')?.cpuCores).toBeNull(); // first sample of c2, not (500-2)/10

    const points = sampler.history('run1', 0);
    expect(points.map((p) => p.cpuCores)).toEqual([null, 0.5, null, null]);
    expect(points.map((p) => p.memoryWorkingSetBytes)).toEqual([64 * MiB, 65 * MiB, 1 * MiB, 1 * MiB]);
    expect(points.map((p) => p.memoryUsageBytes)).toEqual([65 * MiB, 66 * MiB, 2 * MiB, 2 * MiB]);
  });

  it('drops points older than the retention, keeps history of an agent that ended until it ages out', async () => {
    const a = await addAgent('run1', { phase: 'Running', node: 'n1', containerId: 'c1' });
    collector.table.set('c1', { cpuSeconds: 1, workingSetBytes: MiB });
    for (let i = 0; i < 9; i++) await round();
    // 60 s retention at 10 s steps: 7 points (t-60s .. t) survive.
    expect(sampler.history('run1', 0)).toHaveLength(7);
    expect(sampler.history('run1', clock.now() - 20_000)).toHaveLength(3);

    await store.updateAgent('run1', a.version, { status: { ...a.status, phase: 'Succeeded' }, updatedAt: clock.now() });
    await round();
    expect(sampler.latest('run1')).toBeUndefined();
    expect(sampler.current()).toEqual([]);
    expect(sampler.history('run1', 0)).toHaveLength(6);
    await round(60_000);
    expect(sampler.history('run1', 0)).toHaveLength(0);
  });

  it('hands over the last reading of each run that ends: leaving Running, a new container, a finished agent', async () => {
    const ended: EndedRun[] = [];
    sampler.onRunEnded((r) => ended.push(r));
    const runningSince = clock.now();
    let a = await addAgent('run1', { phase: 'Running', node: 'n1', containerId: 'c1', phaseSince: runningSince });
    collector.table.set('c1', { cpuSeconds: 3, workingSetBytes: MiB });
    await round();
    const firstSampleMs = clock.now();
    collector.table.set('c1', { cpuSeconds: 4, workingSetBytes: MiB });
    await round();
    collector.table.delete('c1'); // exited: the cgroup is gone, no sample this round
    await round();
    expect(ended).toEqual([]);
    // Through Stopping (a live phase, no container): the reading survives the round that sees it.
    a = await store.updateAgent('run1', a.version, { status: { ...a.status, phase: 'Stopping' }, updatedAt: clock.now() });
    await round();
    expect(ended).toEqual([{ agentId: 'run1', tenantId: 't1', containerId: 'c1', runningSinceMs: runningSince, cpuUsageSeconds: 4, sampledAtMs: firstSampleMs + 10_000, endedBeforeMs: clock.now() }]);
    a = await store.updateAgent('run1', a.version, { status: { ...a.status, phase: 'Stopped' }, updatedAt: clock.now() });
    await round();
    expect(ended).toHaveLength(1); // reported once

    // Running again in another container without the sampler seeing it in between, then finished.
    const again = clock.now();
    a = await store.updateAgent('run1', a.version, { status: { ...a.status, phase: 'Running', containerId: 'c2', phaseSince: again }, updatedAt: clock.now() });
    collector.table.set('c2', { cpuSeconds: 7, workingSetBytes: MiB });
    await round();
    const third = clock.now() + 5_000;
    a = await store.updateAgent('run1', a.version, { status: { ...a.status, containerId: 'c3', phaseSince: third }, updatedAt: clock.now() });
    await round();
    expect(ended[1]).toEqual({ agentId: 'run1', tenantId: 't1', containerId: 'c2', runningSinceMs: again, cpuUsageSeconds: 7, sampledAtMs: clock.now() - 10_000, endedBeforeMs: third });
    // c3 was never sampled: nothing to hand over when it finishes.
    await store.updateAgent('run1', a.version, { status: { ...a.status, phase: 'Succeeded' }, updatedAt: clock.now() });
    await round();
    expect(ended).toHaveLength(2);
  });

  it('keeps the last round when a collector fails, and recovers on the next', async () => {
    await addAgent('run1', { phase: 'Running', node: 'n1', containerId: 'c1' });
    collector.table.set('c1', { cpuSeconds: 1, workingSetBytes: MiB });
    const failing: UsageCollector = { collect: () => Promise.reject(new Error('cgroup gone')) };
    let broken = true;
    const s = new UsageSampler({ store, runtimes: new RuntimeRegistry([docker]), collectorFor: () => (broken ? failing : collector), clock });
    clock.advance(1);
    await s.sampleOnce();
    expect(s.completedRounds).toBe(1);
    expect(s.latest('run1')).toBeUndefined();
    expect(s.current().map((v) => v.agentId)).toEqual(['run1']);
    broken = false;
    clock.advance(1);
    await s.sampleOnce();
    expect(s.latest('run1')?.memoryWorkingSetBytes).toBe(MiB);
  });

  it('sums usage per node, for all tenants or one; unknown where running agents were not measured', async () => {
    expect(sampler.nodeUsage('n1')).toBeUndefined(); // no round yet
    await addAgent('a1', { phase: 'Running', node: 'n1', containerId: 'c1' }, 't1');
    await addAgent('a2', { phase: 'Running', node: 'n1', containerId: 'c2' }, 't2');
    await addAgent('p1', { phase: 'Pending', node: 'n1' }, 't3');
    await addAgent('s1', { phase: 'Running', node: 'sim', containerId: 's1' }, 't1');
    collector.table.set('c1', { cpuSeconds: 10, workingSetBytes: 10 * MiB });
    collector.table.set('c2', { cpuSeconds: 20, workingSetBytes: 30 * MiB });
    await round();
    // Measured, but CPU needs a second sample.
    expect(sampler.nodeUsage('n1')).toEqual({ cpuMillicores: null, memoryWorkingSetBytes: 40 * MiB, agents: 2, sampledAt: clock.now() });
    collector.table.set('c1', { cpuSeconds: 12.5, workingSetBytes: 12 * MiB }); // 250m
    collector.table.set('c2', { cpuSeconds: 25, workingSetBytes: 30 * MiB }); // 500m
    await round();
    expect(sampler.nodeUsage('n1')).toEqual({ cpuMillicores: 750, memoryWorkingSetBytes: 42 * MiB, agents: 2, sampledAt: clock.now() });
    expect(sampler.nodeUsage('n1', 't1')).toEqual({ cpuMillicores: 250, memoryWorkingSetBytes: 12 * MiB, agents: 1, sampledAt: clock.now() });
    // A tenant without running agents there, and a node without any: zero, measured at the round's end.
    expect(sampler.nodeUsage('n1', 't3')).toEqual({ cpuMillicores: 0, memoryWorkingSetBytes: 0, agents: 0, sampledAt: clock.now() });
    expect(sampler.nodeUsage('n2')).toEqual({ cpuMillicores: 0, memoryWorkingSetBytes: 0, agents: 0, sampledAt: clock.now() });
    // Running agents that cannot be sampled (simulated node): unknown, not zero.
    expect(sampler.nodeUsage('sim')).toBeUndefined();
    expect(sampler.nodeUsage('sim', 't1')).toBeUndefined();
    expect(sampler.nodeUsage('sim', 't2')?.agents).toBe(0);
    // A new agent adds its memory at once and its CPU from its second sample.
    await addAgent('a3', { phase: 'Running', node: 'n1', containerId: 'c3' }, 't1');
    collector.table.set('c3', { cpuSeconds: 1, workingSetBytes: 8 * MiB });
    collector.table.set('c1', { cpuSeconds: 15, workingSetBytes: 12 * MiB });
    collector.table.set('c2', { cpuSeconds: 30, workingSetBytes: 30 * MiB });
    await round();
    expect(sampler.nodeUsage('n1')).toMatchObject({ cpuMillicores: 750, memoryWorkingSetBytes: 50 * MiB, agents: 3 });
  });

  it('answers nodeUsage from the last complete round while the next one is collecting', async () => {
    // Two nodes: n2's collection is held, so the round stops after n1's samples are recorded
    // (its view has the new usage, its history the new point) and before the round completes.
    const n2 = { driver: 'docker', nodeId: 'n2' } as Runtime;
    const held = new TableCollector(clock);
    let release: (() => void) | undefined;
    let hold = false;
    const collectHeld = held.collect.bind(held);
    held.collect = async (ids) => {
      const out = await collectHeld(ids);
      if (hold) await new Promise<void>((r) => (release = r));
      return out;
    };
    const s = new UsageSampler({ store, runtimes: new RuntimeRegistry([docker, n2]), collectorFor: (r) => (r.nodeId === 'n2' ? held : collector), clock });
    await addAgent('a1', { phase: 'Running', node: 'n1', containerId: 'c1' });
    await addAgent('a2', { phase: 'Running', node: 'n2', containerId: 'c2' });
    collector.table.set('c1', { cpuSeconds: 10, workingSetBytes: 10 * MiB });
    held.table.set('c2', { cpuSeconds: 1, workingSetBytes: MiB });
    clock.advance(10_000);
    await s.sampleOnce();
    collector.table.set('c1', { cpuSeconds: 15, workingSetBytes: 10 * MiB }); // 500m
    clock.advance(10_000);
    await s.sampleOnce();
    const completeRoundMs = clock.now();

    collector.table.set('c1', { cpuSeconds: 25, workingSetBytes: 20 * MiB }); // 1000m
    hold = true;
    clock.advance(10_000);
    const next = s.sampleOnce();
    // Until n1's new point is in its history: the round is past recording n1, not done.
    const deadline = Date.now() + 5_000;
    while ((release === undefined || s.history('a1', 0).length < 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    expect(s.history('a1', 0).map((p) => p.cpuCores)).toEqual([null, 0.5, 1]);
    expect(s.completedRounds).toBe(2);
    // The first ask of this round's sums happens now, mid-round: the figures of the last
    // complete round, not the half-recorded one (1000m, 20 MiB) nor "not measured".
    expect(s.nodeUsage('n1')).toEqual({ cpuMillicores: 500, memoryWorkingSetBytes: 10 * MiB, agents: 1, sampledAt: completeRoundMs });
    expect(s.nodeUsage('n1', 't1')).toEqual({ cpuMillicores: 500, memoryWorkingSetBytes: 10 * MiB, agents: 1, sampledAt: completeRoundMs });
    release!();
    await next;
    expect(s.nodeUsage('n1')).toEqual({ cpuMillicores: 1000, memoryWorkingSetBytes: 20 * MiB, agents: 1, sampledAt: clock.now() });
  });

  it('runs rounds on its own timer until stopped', async () => {
    await addAgent('run1', { phase: 'Running', node: 'n1', containerId: 'c1' });
    collector.table.set('c1', { cpuSeconds: 1, workingSetBytes: MiB });
    const s = new UsageSampler({ store, runtimes: new RuntimeRegistry([docker]), collectorFor: () => collector, intervalMs: 20 });
    s.start();
    const deadline = Date.now() + 5_000;
    while (s.completedRounds < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await s.stop();
    const rounds = s.completedRounds;
    expect(rounds).toBeGreaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 60));
    expect(s.completedRounds).toBe(rounds);
  });
});
