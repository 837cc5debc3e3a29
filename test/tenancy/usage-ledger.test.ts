import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { Agent, AgentStatus } from '../../src/domain/agent.js';
import { ManualClock } from '../../src/domain/clock.js';
import type { Logger } from '../../src/domain/logger.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import type { Store } from '../../src/store/store.js';
import { RateCard } from '../../src/tenancy/rate-card.js';
import { UsageMeter, type CpuCounter } from '../../src/tenancy/usage-meter.js';
import { buildUsageReport, microsToString, quantitiesOf } from '../../src/tenancy/usage-ledger.js';
import { PG_URL, storeKinds, type StoreKind } from './tenancy-harness.js';

const kinds = await storeKinds();
const dir = mkdtempSync(join(tmpdir(), 'ap-ledger-'));
const schemas: string[] = [];
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (schemas.length === 0) return;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  for (const s of schemas) await c.query(`drop schema if exists "${s}" cascade`);
  await c.end();
});

/** A reopenable store: the "restart" closes it and opens the same database again. */
function storeFactory(kind: StoreKind): () => Store {
  if (kind === 'sqlite') {
    const file = join(dir, `${randomUUID()}.db`);
    return () => openSqliteStore(file);
  }
  const schema = `ledger_${randomBytes(5).toString('hex')}`;
  schemas.push(schema);
  return () => openPostgresStore(PG_URL, { schema });
}

const SECOND = 1000;
const card = RateCard.parse('{"currency":"USD","cpuCoreHour":"0.36","memoryGiBHour":"0.036","gpuHour":"3.6"}', 'test');

function collectingLogger(lines: { obj: object; msg?: string }[]): Logger {
  const l: Logger = { debug() {}, info() {}, error() {}, warn: (obj, msg) => void lines.push({ obj, msg }), child: () => l };
  return l;
}

async function setPhase(store: Store, clock: ManualClock, id: string, phase: AgentStatus['phase']): Promise<Agent> {
  const a = (await store.getAgent(id))!;
  return store.updateAgent(id, a.version, { status: { ...a.status, phase, phaseSince: clock.now(), ...(phase === 'Running' ? { startedAt: clock.now() } : {}) }, updatedAt: clock.now() });
}

/** A Running-capable agent of `tenantId` with 1 core and 64 MiB. */
async function createAgent(store: Store, clock: ManualClock, tenantId: string, name: string): Promise<string> {
  const { agent } = await store.createAgent({
    id: randomUUID().replace(/-/g, '').slice(0, 20),
    tenantId,
    name,
    labels: {},
    spec: { image: 'x', command: [], args: [], env: {}, resources: { cpuMillicores: 1000, memoryMiB: 64, gpu: 0, cpuLimitMillicores: 1000, memoryLimitMiB: 64 }, restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0, nodeSelector: {}, tolerations: [] },
    desired: 'running',
    status: { phase: 'Pending', restarts: 0, phaseSince: clock.now() },
    createdAt: clock.now(),
  });
  return agent.id;
}

/** An agent's ledger pieces, oldest first, as [length ms, used CPU µs]. */
async function piecesOf(store: Store, tenantId: string, agentId: string): Promise<[number, number | undefined][]> {
  return (await store.listUsage({ tenantId }))
    .filter((r) => r.agentId === agentId)
    .sort((a, b) => a.startMs - b.startMs)
    .map((r) => [r.endMs - r.startMs, r.usedCpuMicros]);
}

describe.each(kinds)('usage ledger with a manual clock (%s)', (kind) => {
  it('known run times give known totals and costs, across a control-plane restart and clock jumps', async () => {
    const open = storeFactory(kind);
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 10, 0, 0));
    const t0 = clock.now();
    let store = open();
    await store.migrate();
    const warnings: { obj: object; msg?: string }[] = [];
    let meter = new UsageMeter({ store, clock, intervalMs: 10 * SECOND, maxStepMs: 3600 * SECOND, logger: collectingLogger(warnings) });
    const mk = async (name: string, cpuMillicores: number, memoryMiB: number, gpu: number): Promise<string> => {
      const { agent } = await store.createAgent({
        id: randomUUID().replace(/-/g, '').slice(0, 20),
        tenantId: 'bill',
        name,
        labels: { team: name === 'gpu' ? 'ml' : 'web' },
        spec: { image: 'x', command: [], args: [], env: {}, resources: { cpuMillicores, memoryMiB, gpu, cpuLimitMillicores: cpuMillicores, memoryLimitMiB: memoryMiB }, restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0, nodeSelector: {}, tolerations: [] },
        desired: 'running',
        status: { phase: 'Pending', restarts: 0, phaseSince: clock.now() },
        createdAt: clock.now(),
      });
      return agent.id;
    };
    const web = await mk('web', 500, 2048, 0); // 0.5 core, 2 GiB
    const gpu = await mk('gpu', 2000, 1024, 1); // 2 cores, 1 GiB, 1 GPU

    // Pending time accrues nothing.
    clock.advance(30 * SECOND);
    expect(await meter.tick()).toBe(0);
    await setPhase(store, clock, web, 'Starting');
    await setPhase(store, clock, web, 'Running'); // web runs from t0+30s
    clock.advance(10 * SECOND);
    await setPhase(store, clock, gpu, 'Running'); // gpu runs from t0+40s
    clock.advance(20 * SECOND);
    expect(await meter.tick()).toBe(2); // t0+60s
    clock.advance(5 * SECOND);

    // Restart of the control plane: the store is closed and opened again, with a new meter.
    await meter.stop();
    await store.close();
    store = open();
    await store.migrate();
    meter = new UsageMeter({ store, clock, intervalMs: 10 * SECOND, maxStepMs: 3600 * SECOND, logger: collectingLogger(warnings) });
    clock.advance(25 * SECOND); // t0+90s
    expect(await meter.tick()).toBe(2);
    expect(await meter.tick()).toBe(0); // nothing new at the same instant: no double count

    // The clock goes back 20 s: nothing accrues until it has caught up.
    clock.advance(-20 * SECOND);
    expect(await meter.tick()).toBe(0);
    expect(warnings.some((w) => (w.obj as { kind?: string }).kind === 'backwards')).toBe(true);
    clock.advance(30 * SECOND); // t0+100s
    await meter.tick();

    // web stops at t0+120s: the store closes the interval in the phase change.
    clock.advance(20 * SECOND);
    await setPhase(store, clock, web, 'Stopping');
    clock.advance(5 * SECOND);
    await setPhase(store, clock, web, 'Stopped'); // Stopping time is not Running time
    // A forward jump of 3 h: at most maxStep (1 h) is billed, the rest skipped and logged.
    clock.advance(3 * 3600 * SECOND);
    await meter.tick();
    expect(warnings.some((w) => (w.obj as { kind?: string }).kind === 'forward')).toBe(true);
    clock.advance(10 * SECOND);
    await setPhase(store, clock, gpu, 'Succeeded');
    clock.advance(60 * SECOND);
    expect(await meter.tick()).toBe(0); // nothing runs: nothing accrues

    const records = await store.listUsage({ tenantId: 'bill' });
    const byAgent = buildUsageReport(records, { fromMs: t0, toMs: clock.now(), groupBy: 'agent', rates: card.ratesFor('bill') });
    const row = (id: string) => quantitiesOf(byAgent.rows.find((r) => r.key === id)!.amounts);
    // web: Running t0+30s .. t0+120s = 90 s.
    expect(row(web)).toMatchObject({ runSeconds: 90, cpuCoreSeconds: 45, memoryGiBSeconds: 180, gpuSeconds: 0 });
    // gpu: Running t0+40s .. t0+100s = 60 s accrued by ticks; the next tick comes 3 h 25 s
    // later (jump): clamped to 1 h; then 10 s until Succeeded: 3670 s.
    expect(row(gpu)).toMatchObject({ runSeconds: 3670, cpuCoreSeconds: 7340, memoryGiBSeconds: 3670, gpuSeconds: 3670 });
    // Costs: core-hour 0.36 => 0.0001/core-s; GiB-hour 0.036 => 0.00001/GiB-s; GPU-hour 3.6 => 0.001/s.
    // web: 45*0.0001 + 180*0.00001 = 0.0063; gpu: 7340*0.0001 + 3670*0.00001 + 3670*0.001 = 4.4407
    expect(microsToString(byAgent.rows.find((r) => r.key === web)!.costMicros)).toBe('0.006300');
    expect(microsToString(byAgent.rows.find((r) => r.key === gpu)!.costMicros)).toBe('4.440700');
    expect(microsToString(byAgent.total.costMicros)).toBe('4.447000');
    expect(byAgent.rows.reduce((s, r) => s + r.costMicros, 0n)).toBe(byAgent.total.costMicros);
    // Intervals never overlap per agent (no double count) and leave no gap while Running.
    for (const id of [web, gpu]) {
      const mine = records.filter((r) => r.agentId === id).sort((a, b) => a.startMs - b.startMs);
      for (let i = 1; i < mine.length; i++) expect(mine[i]!.startMs).toBeGreaterThanOrEqual(mine[i - 1]!.endMs);
    }
    const byLabel = buildUsageReport(records, { fromMs: t0, toMs: clock.now(), groupBy: 'label', label: 'team', rates: card.ratesFor('bill') });
    expect(byLabel.rows.map((r) => r.key)).toEqual(['ml', 'web']);
    expect(byLabel.total.costMicros).toBe(byAgent.total.costMicros);
    await store.close();
  });

  it('Failed accrues nothing: a run that fails is billed up to the failure, and a restart of it from Failed bills again only while Running', async () => {
    const open = storeFactory(kind);
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const t0 = clock.now();
    const store = open();
    await store.migrate();
    const meter = new UsageMeter({ store, clock, intervalMs: 10 * SECOND });
    const { agent } = await store.createAgent({
      id: randomUUID().replace(/-/g, '').slice(0, 20),
      tenantId: 'fail',
      name: 'crashy',
      labels: {},
      spec: { image: 'x', command: [], args: [], env: {}, resources: { cpuMillicores: 1000, memoryMiB: 1024, gpu: 1, cpuLimitMillicores: 1000, memoryLimitMiB: 1024 }, restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0, nodeSelector: {}, tolerations: [] },
      desired: 'running',
      status: { phase: 'Pending', restarts: 0, phaseSince: clock.now() },
      createdAt: clock.now(),
    });
    clock.advance(5 * SECOND);
    await setPhase(store, clock, agent.id, 'Running'); // t0+5s
    clock.advance(10 * SECOND);
    expect(await meter.tick()).toBe(1); // t0+15s
    clock.advance(7 * SECOND);
    await setPhase(store, clock, agent.id, 'Failed'); // t0+22s: 17 s Running
    // An hour in Failed, with the meter ticking: nothing.
    for (let i = 0; i < 6; i++) {
      clock.advance(600 * SECOND);
      expect(await meter.tick()).toBe(0);
    }
    const open1 = await store.listUsage({ tenantId: 'fail', openUntilMs: clock.now() });
    expect(quantitiesOf(buildUsageReport(open1, { fromMs: t0, toMs: clock.now(), groupBy: 'agent', rates: card.ratesFor('fail') }).total.amounts)).toMatchObject({ runSeconds: 17, gpuSeconds: 17 });
    // Started again (a restart policy or the user): Pending, then Running 3 s, then Failed again.
    await setPhase(store, clock, agent.id, 'Pending');
    clock.advance(4 * SECOND);
    await setPhase(store, clock, agent.id, 'Running');
    clock.advance(3 * SECOND);
    await setPhase(store, clock, agent.id, 'Failed');
    clock.advance(3600 * SECOND);
    expect(await meter.tick()).toBe(0);
    const records = await store.listUsage({ tenantId: 'fail', openUntilMs: clock.now() });
    const total = quantitiesOf(buildUsageReport(records, { fromMs: t0, toMs: clock.now(), groupBy: 'agent', rates: card.ratesFor('fail') }).total.amounts);
    expect(total).toMatchObject({ runSeconds: 20, cpuCoreSeconds: 20, memoryGiBSeconds: 20, gpuSeconds: 20 });
    // No record reaches into a Failed stretch.
    expect(Math.max(...records.map((r) => r.endMs))).toBe(t0 + 22 * SECOND + 3604 * SECOND + 3 * SECOND);
    await store.close();
  });

  it('the closing piece of a run gets its used CPU from the last reading on the next pass; unknown without a baseline', async () => {
    const open = storeFactory(kind);
    const clock = new ManualClock(Date.UTC(2026, 6, 1));
    const store = open();
    await store.migrate();
    // What the usage sampler would read: the cumulative counter per agent's container.
    const counters = new Map<string, CpuCounter>();
    const meterOf = (): UsageMeter => new UsageMeter({ store, clock, intervalMs: 300 * SECOND, cpuCounter: (id) => counters.get(id) });
    let meter = meterOf();
    const mk = async (name: string): Promise<string> => {
      const { agent } = await store.createAgent({
        id: randomUUID().replace(/-/g, '').slice(0, 20),
        tenantId: 'cpu',
        name,
        labels: {},
        spec: { image: 'x', command: [], args: [], env: {}, resources: { cpuMillicores: 1000, memoryMiB: 64, gpu: 0, cpuLimitMillicores: 1000, memoryLimitMiB: 64 }, restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0, nodeSelector: {}, tolerations: [] },
        desired: 'running',
        status: { phase: 'Pending', restarts: 0, phaseSince: clock.now() },
        createdAt: clock.now(),
      });
      return agent.id;
    };
    const piecesOf = async (id: string) => (await store.listUsage({ tenantId: 'cpu' })).filter((r) => r.agentId === id).map((r) => [r.endMs - r.startMs, r.usedCpuMicros]);
    const ended = (id: string, containerId: string, runningSinceMs: number, cpuUsageSeconds: number) => ({ agentId: id, tenantId: 'cpu', containerId, runningSinceMs, cpuUsageSeconds, sampledAtMs: clock.now(), endedBeforeMs: clock.now() });

    // A job shorter than one accrual interval: one piece, the whole run, counted from the container's start.
    const job = await mk('job');
    const jobStart = (await setPhase(store, clock, job, 'Running')).status.phaseSince;
    clock.advance(30 * SECOND);
    await setPhase(store, clock, job, 'Succeeded');
    meter.runEnded(ended(job, 'c-job', jobStart, 21.5));
    expect(await piecesOf(job)).toEqual([[30 * SECOND, undefined]]);
    await meter.tick();
    expect(await piecesOf(job)).toEqual([[30 * SECOND, 21_500_000]]);

    // A longer run: the closing piece is the last reading minus the meter's reading at its start.
    const long = await mk('long');
    const longStart = (await setPhase(store, clock, long, 'Running')).status.phaseSince;
    clock.advance(300 * SECOND);
    counters.set(long, { containerId: 'c-long', cpuUsageSeconds: 150, sampledAtMs: clock.now() });
    await meter.tick();
    clock.advance(100 * SECOND);
    await setPhase(store, clock, long, 'Stopping');
    counters.delete(long);
    meter.runEnded(ended(long, 'c-long', longStart, 190));
    await meter.tick();
    expect(await piecesOf(long)).toEqual([
      [300 * SECOND, 150_000_000],
      [100 * SECOND, 40_000_000],
    ]);
    // Reported again (another replica's sampler, a repeated round): the figure stays.
    meter.runEnded(ended(long, 'c-long', longStart, 999));
    await meter.tick();
    expect((await piecesOf(long))[1]).toEqual([100 * SECOND, 40_000_000]);

    // A control plane restarted mid-run has no reading where the closing piece starts: unknown, not a guess.
    const cut = await mk('cut');
    const cutStart = (await setPhase(store, clock, cut, 'Running')).status.phaseSince;
    clock.advance(300 * SECOND);
    counters.set(cut, { containerId: 'c-cut', cpuUsageSeconds: 100, sampledAtMs: clock.now() });
    await meter.tick();
    meter = meterOf();
    clock.advance(50 * SECOND);
    await setPhase(store, clock, cut, 'Failed');
    counters.delete(cut);
    meter.runEnded(ended(cut, 'c-cut', cutStart, 120));
    await meter.tick();
    expect(await piecesOf(cut)).toEqual([
      [300 * SECOND, 100_000_000],
      [50 * SECOND, undefined],
    ]);
    await store.close();
  });

  // Counter values are multiples of 1/8 s, exact in binary, so sums compare exactly.
  it('a tiny accrual interval: several pieces in a run\u2019s first second sum to the counter, not a multiple of it', async () => {
    const store = storeFactory(kind)();
    await store.migrate();
    const clock = new ManualClock(Date.UTC(2026, 7, 1));
    const counters = new Map<string, CpuCounter>();
    const meter = new UsageMeter({ store, clock, intervalMs: 100, cpuCounter: (id) => counters.get(id) });
    const id = await createAgent(store, clock, 'fast', 'fast');
    const runStart = (await setPhase(store, clock, id, 'Running')).status.phaseSince;
    // The sampler reads every 200 ms, the meter closes a piece every 100 ms: every other
    // pass sees no new reading, and its piece gets none of the CPU (the next one gets it).
    let cpuSeconds = 0;
    for (let pass = 1; pass <= 9; pass++) {
      clock.advance(100);
      if (pass % 2 === 1) {
        cpuSeconds += 0.125;
        counters.set(id, { containerId: 'c-fast', cpuUsageSeconds: cpuSeconds, sampledAtMs: clock.now() - 10 });
      }
      expect(await meter.tick()).toBe(1);
    }
    // The run ends inside its first second; its closing piece [900, 950] ms is filled from
    // the sampler's last reading, measured from the meter's reading at 900 ms.
    clock.advance(50);
    await setPhase(store, clock, id, 'Succeeded');
    meter.runEnded({ agentId: id, tenantId: 'fast', containerId: 'c-fast', runningSinceMs: runStart, cpuUsageSeconds: cpuSeconds + 0.125, sampledAtMs: clock.now() - 5, endedBeforeMs: clock.now() + 1 });
    await meter.tick();
    const pieces = await piecesOf(store, 'fast', id);
    expect(pieces).toHaveLength(10);
    expect(pieces.map(([, used]) => used)).toEqual([125_000, 0, 125_000, 0, 125_000, 0, 125_000, 0, 125_000, 125_000]);
    expect(pieces.reduce((sum, [, used]) => sum + used!, 0)).toBe((cpuSeconds + 0.125) * 1e6);
    await store.close();
  });

  for (const restart of ['into a new container', 'in place (same container id)'] as const) {
    it(`a quick restart ${restart}: the old run's counter is not billed to the new run`, async () => {
      const store = storeFactory(kind)();
      await store.migrate();
      const clock = new ManualClock(Date.UTC(2026, 8, 1));
      const counters = new Map<string, CpuCounter>();
      const meter = new UsageMeter({ store, clock, intervalMs: 10 * SECOND, cpuCounter: (id) => counters.get(id) });
      const id = await createAgent(store, clock, 'again', 'again');
      const sample = (containerId: string, cpuUsageSeconds: number): void => void counters.set(id, { containerId, cpuUsageSeconds, sampledAtMs: clock.now() });
      const oldContainer = 'c-old';
      const newContainer = restart === 'into a new container' ? 'c-new' : oldContainer;

      const firstStart = (await setPhase(store, clock, id, 'Running')).status.phaseSince;
      clock.advance(300 * SECOND);
      sample(oldContainer, 240);
      await meter.tick(); // [0, 300 s]: 240 s, from the container's start
      clock.advance(4 * SECOND);
      sample(oldContainer, 244); // the sampler's last reading of the first run
      clock.advance(SECOND);
      await setPhase(store, clock, id, 'Failed'); // closes [300 s, 305 s]
      // The sampler hands over the old run's last reading when it sees another container;
      // a container restarted in place keeps its id and the sampler notices nothing.
      if (newContainer !== oldContainer) meter.runEnded({ agentId: id, tenantId: 'again', containerId: oldContainer, runningSinceMs: firstStart, cpuUsageSeconds: 244, sampledAtMs: clock.now() - SECOND, endedBeforeMs: clock.now() + 2 * SECOND });
      clock.advance(SECOND);
      await setPhase(store, clock, id, 'Pending');
      clock.advance(SECOND);
      await setPhase(store, clock, id, 'Running'); // the new run, at 307 s

      // A pass before the sampler's next round: its only reading (244 s) is the old run's.
      clock.advance(500);
      await meter.tick();
      // The new counter counts from the new start: a piece that begins within the run's
      // first second counts from 0, the first piece having had no reading of this run.
      clock.advance(2 * SECOND);
      sample(newContainer, 1.5);
      clock.advance(500);
      await meter.tick();
      clock.advance(10 * SECOND);
      sample(newContainer, 11.5);
      await meter.tick();

      const pieces = await piecesOf(store, 'again', id);
      expect(pieces.slice(2)).toEqual([
        [500, undefined],
        [2500, 1_500_000],
        [10 * SECOND, 10_000_000],
      ]);
      // The first run: 240 s, and its closing piece when the sampler reported the run's end.
      expect(pieces.slice(0, 2)).toEqual([
        [300 * SECOND, 240_000_000],
        [5 * SECOND, newContainer !== oldContainer ? 4_000_000 : undefined],
      ]);
      await store.close();
    });
  }

  it('replicas closing an agent\u2019s pieces in turn never count CPU another replica already billed', async () => {
    const open = storeFactory(kind);
    const a = open();
    await a.migrate();
    const b = kind === 'postgres' ? open() : a;
    const clock = new ManualClock(Date.UTC(2026, 9, 1));
    let cpuSeconds = 0;
    const counter = (): CpuCounter => ({ containerId: 'c-shared', cpuUsageSeconds: cpuSeconds, sampledAtMs: clock.now() });
    // Each replica has its own sampler; both read the same container.
    const replicas = [new UsageMeter({ store: a, clock, cpuCounter: counter }), new UsageMeter({ store: b, clock, cpuCounter: counter })];
    const id = await createAgent(a, clock, 'turns', 'turns');
    await setPhase(a, clock, id, 'Running');
    // Replicas take turns (0, 1, 0, 1, 0), then replica 0 twice more: its baseline is where
    // the previous piece starts again, so it measures the delta once more.
    for (const r of [0, 1, 0, 1, 0, 0, 0]) {
      clock.advance(10 * SECOND);
      cpuSeconds += 8;
      expect(await replicas[r]!.tick()).toBe(1);
    }
    const pieces = await piecesOf(a, 'turns', id);
    expect(pieces.map(([, used]) => used)).toEqual([8_000_000, undefined, undefined, undefined, undefined, 8_000_000, 8_000_000]);
    const known = pieces.reduce((sum, [, used]) => sum + (used ?? 0), 0);
    expect(known).toBeLessThanOrEqual(cpuSeconds * 1e6);
    await a.close();
    if (b !== a) await b.close();
  });

  it('only the leader\u2019s meter bills: a follower bills nothing, and a handover leaves one piece without used CPU', async () => {
    const open = storeFactory(kind);
    const a = open();
    await a.migrate();
    const b = kind === 'postgres' ? open() : a;
    const clock = new ManualClock(Date.UTC(2026, 10, 1));
    let cpuSeconds = 0;
    const counter = (): CpuCounter => ({ containerId: 'c-led', cpuUsageSeconds: cpuSeconds, sampledAtMs: clock.now() });
    let leader = 0;
    const replicas = [0, 1].map((r) => new UsageMeter({ store: r === 0 ? a : b, clock, cpuCounter: counter, isLeader: () => leader === r }));
    const id = await createAgent(a, clock, 'led', 'led');
    await setPhase(a, clock, id, 'Running');
    // Both tick every interval; leadership moves from replica 0 to 1 after the third.
    for (let step = 0; step < 6; step++) {
      clock.advance(10 * SECOND);
      cpuSeconds += 5;
      if (step === 3) leader = 1;
      const [x, y] = await Promise.all(replicas.map((m) => m.tick()));
      expect(leader === 0 ? [x, y] : [y, x]).toEqual([1, 0]);
    }
    const pieces = await piecesOf(a, 'led', id);
    expect(pieces).toHaveLength(6);
    // The first piece counts from the run's start; the new leader's first piece has no baseline.
    expect(pieces.map(([, used]) => used)).toEqual([5_000_000, 5_000_000, 5_000_000, undefined, 5_000_000, 5_000_000]);
    await a.close();
    if (b !== a) await b.close();
  });

  it('two meters (replicas) ticking at once bill each interval once', async () => {
    const open = storeFactory(kind);
    const clock = new ManualClock(Date.UTC(2026, 3, 1));
    const a = open();
    const b = kind === 'postgres' ? open() : a;
    await a.migrate();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { agent } = await a.createAgent({
        id: `agent${String(i).padStart(10, '0')}`,
        tenantId: 'twin',
        name: `a${i}`,
        labels: {},
        spec: { image: 'x', command: [], args: [], env: {}, resources: { cpuMillicores: 1000, memoryMiB: 1024, gpu: 0, cpuLimitMillicores: 1000, memoryLimitMiB: 1024 }, restartPolicy: 'Never', schedulingPolicy: 'spread', priority: 0, nodeSelector: {}, tolerations: [] },
        desired: 'running',
        status: { phase: 'Pending', restarts: 0, phaseSince: clock.now() },
        createdAt: clock.now(),
      });
      await setPhase(a, clock, agent.id, 'Running');
      ids.push(agent.id);
    }
    const m1 = new UsageMeter({ store: a, clock });
    const m2 = new UsageMeter({ store: b, clock });
    for (let step = 0; step < 5; step++) {
      clock.advance(7 * SECOND);
      const [x, y] = await Promise.all([m1.tick(), m2.tick()]);
      expect(x + y).toBe(20);
    }
    const total = buildUsageReport(await a.listUsage({ tenantId: 'twin' }), { fromMs: 0, toMs: clock.now() + 1, groupBy: 'agent', rates: card.ratesFor('twin') });
    expect(quantitiesOf(total.total.amounts).runSeconds).toBe(20 * 35);
    await a.close();
    if (b !== a) await b.close();
  });
});
