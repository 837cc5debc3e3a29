/**
 * Used CPU seconds in the usage ledger, from a real busy Docker container: the meter's
 * pieces carry the CPU the container's cgroup counted, the first piece of the run included
 * (its baseline is the container's start), and the usage endpoint reports their sum. The
 * closing piece of a run (written by the store when the agent leaves Running, after the
 * cgroup is gone) gets its used CPU on the meter's next pass, from the sampler's last reading.
 *
 * The sampler and the meter are driven by hand (their loops are set to hours), so each
 * ledger piece ends at a sample this test took between two cgroup readings of its own: the
 * sampled counter lies between them whatever the machine's load, with no timing margin.
 * Needs Docker: fails when CI=true and Docker is missing, skips otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { TestPlatform, sleep, uniqueName } from '../integration/harness.js';
import { cgroupCpuSeconds } from '../helpers/cgroup-cpu.js';

const hasDocker = await requireDocker();

/** The ledger keeps whole microseconds; the cgroup v2 counter is whole microseconds too. */
const ROUNDING_SECONDS = 2e-6;

/** The cgroup counter read right before and right after one sampler round. */
interface Bracket {
  before: number;
  after: number;
}

function expectBetween(value: number, low: number, high: number, what: string): void {
  expect(value, `${what}: ${value} s within [${low}, ${high}]`).toBeGreaterThanOrEqual(low - ROUNDING_SECONDS);
  expect(value, `${what}: ${value} s within [${low}, ${high}]`).toBeLessThanOrEqual(high + ROUNDING_SECONDS);
}

describe.skipIf(!hasDocker)('used CPU seconds in the ledger (real dockerd)', () => {
  let p: TestPlatform;
  let busybox: string;

  beforeAll(async () => {
    busybox = await ensureBusyboxImage();
    p = await TestPlatform.start({
      env: {
        // Hours: only this test's sampleOnce() and tick() calls sample and accrue.
        AGENT_PLATFORM_USAGE_INTERVAL_MS: '3000000',
        AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS: '3000000',
      },
    });
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  });

  it('pieces carry the cgroup counter, from the run\u2019s start; the usage endpoint sums them', async () => {
    const created = await p.create({ name: uniqueName('busy'), image: busybox, command: ['sh', '-c', 'while :; do :; done'], resources: { cpu: '1', memory: '32Mi' } });
    const { agent } = await p.waitForPhase(created.id, 'Running');
    const containerId = agent.status.containerId!;
    const { usage, tenancy, store } = p.platform;
    const ledger = async () => (await store.listUsage({ tenantId: 'default' })).filter((r) => r.agentId === created.id).sort((a, b) => a.startMs - b.startMs);
    // A sample between two readings of the ground truth, then the piece up to now.
    const accrue = async (): Promise<Bracket> => {
      const before = cgroupCpuSeconds(containerId);
      await usage.sampleOnce();
      const after = cgroupCpuSeconds(containerId);
      await tenancy.meter.tick();
      return { before, after };
    };

    await sleep(1500);
    const first = await accrue();
    const afterFirst = await ledger();
    expect(afterFirst).toHaveLength(1);
    // The first piece starts at the run's start and carries the CPU used since the container started.
    expect(afterFirst[0]!.usedCpuMicros, 'first piece has used CPU').toBeDefined();
    expect(afterFirst[0]!.usedCpuMicros! / 1e6).toBeGreaterThan(0.2);
    expectBetween(afterFirst[0]!.usedCpuMicros! / 1e6, first.before, first.after, 'first piece');

    await sleep(2000);
    const second = await accrue();
    await sleep(1000);
    const third = await accrue();
    const pieces = await ledger();
    expect(pieces).toHaveLength(3);
    for (const r of pieces) expect(r.usedCpuMicros, `piece ${r.startMs}..${r.endMs}`).toBeDefined();
    // Each piece is the counter's growth between the samples at its ends; together they are
    // the counter itself at the last sample.
    expectBetween(pieces[1]!.usedCpuMicros! / 1e6, second.before - first.after, second.after - first.before, 'second piece');
    expectBetween(pieces[2]!.usedCpuMicros! / 1e6, third.before - second.after, third.after - second.before, 'third piece');
    const usedSeconds = pieces.reduce((s, r) => s + r.usedCpuMicros!, 0) / 1e6;
    expectBetween(usedSeconds, third.before, third.after, 'sum of the pieces');
    // A busy loop under a 1-core limit uses at most about one core-second per second run
    // (the machine is shared, so it may get less).
    const runSeconds = (pieces.at(-1)!.endMs - pieces[0]!.startMs) / 1000;
    expect(usedSeconds).toBeGreaterThan(0.2 * runSeconds);
    expect(usedSeconds).toBeLessThan(1.1 * runSeconds + 0.2);

    // Over HTTP: the agent's row reports the same used CPU seconds (the open piece has none).
    const report = await p.request<{ rows: { key: string; usedCpuSeconds: number | null; runSeconds: number }[] }>('GET', '/api/v1/tenants/default/usage?groupBy=agent');
    expect(report.status, report.text).toBe(200);
    const row = report.json.rows.find((r) => r.key === created.id)!;
    expect(row.usedCpuSeconds).toBeCloseTo(usedSeconds, 5);
    expect(row.runSeconds).toBeGreaterThanOrEqual(runSeconds);
    // A busy loop left running would steal the CPU of the next test's agents.
    expect((await p.request('DELETE', `/api/v1/agents/${created.id}`)).status).toBe(200);
  }, 90_000);

  /**
   * A busy job that exits by itself after about 4 s. The test samples (sampler round, then
   * the cgroup counter next to it) every SAMPLE_EVERY_MS until the cgroup is gone, so the
   * last counter it read is the job's CPU to within one such round. `midRunTick`: the meter
   * closes a piece halfway, so the closing piece's baseline is the meter's own reading;
   * without it the whole run is the closing piece (a job shorter than one accrual interval)
   * and its baseline is the container's start.
   */
  for (const midRunTick of [false, true]) {
    it(`a job that exits by itself: the closing piece gets its used CPU on the next pass (${midRunTick ? 'after a mid-run piece' : 'the whole run in one piece'})`, async () => {
      const SAMPLE_EVERY_MS = 300;
      const created = await p.create({
        name: uniqueName('job'),
        image: busybox,
        command: ['sh', '-c', 'while :; do :; done & sleep 4; kill $!'],
        resources: { cpu: '1', memory: '32Mi' },
      });
      const { agent } = await p.waitForPhase(created.id, 'Running');
      const containerId = agent.status.containerId!;
      const { usage, tenancy, store } = p.platform;
      const ledger = async () => (await store.listUsage({ tenantId: 'default' })).filter((r) => r.agentId === created.id).sort((a, b) => a.startMs - b.startMs);

      let lastTruth = 0;
      let lastTruthAtMs = Date.now();
      let longestRoundMs = 0;
      let ticked = false;
      for (;;) {
        const roundStartMs = Date.now();
        await usage.sampleOnce();
        let truth: number;
        try {
          truth = cgroupCpuSeconds(containerId);
        } catch {
          break; // the container exited and its cgroup went with it
        }
        longestRoundMs = Math.max(longestRoundMs, Date.now() - lastTruthAtMs);
        lastTruth = truth;
        lastTruthAtMs = Date.now();
        if (midRunTick && !ticked && truth > 1) {
          await tenancy.meter.tick();
          ticked = true;
          expect(await ledger(), 'the mid-run piece').toHaveLength(1);
        }
        await sleep(Math.max(0, SAMPLE_EVERY_MS - (Date.now() - roundStartMs)));
      }
      expect(lastTruth, 'the job was busy').toBeGreaterThan(1);
      expect(ticked).toBe(midRunTick);
      await p.waitForPhase(created.id, 'Succeeded');
      // The closing piece is there, without used CPU: the store had no counter.
      const closed = await ledger();
      expect(closed).toHaveLength(midRunTick ? 2 : 1);
      expect(closed.at(-1)!.usedCpuMicros, 'closing piece before the next pass').toBeUndefined();

      await usage.sampleOnce(); // sees the run ended; hands its last reading to the meter
      await tenancy.meter.tick();
      const pieces = await ledger();
      expect(pieces).toHaveLength(closed.length);
      for (const r of pieces) expect(r.usedCpuMicros, `piece ${r.startMs}..${r.endMs}`).toBeDefined();
      const usedSeconds = pieces.reduce((sum, r) => sum + r.usedCpuMicros!, 0) / 1e6;
      // Short of the counter's last value by at most one sampling round of CPU (1-core limit),
      // never above it (plus the cgroup read that followed the sample).
      const oneRoundCpuSeconds = longestRoundMs / 1000;
      console.info(`[used CPU, exit by itself${midRunTick ? ', mid-run piece' : ''}] ledger ${usedSeconds.toFixed(3)} s, cgroup's last ${lastTruth.toFixed(3)} s, longest round ${longestRoundMs} ms`);
      expect(usedSeconds).toBeGreaterThan(lastTruth - oneRoundCpuSeconds - 0.05);
      expect(usedSeconds).toBeLessThan(lastTruth + 0.05);
      // Another pass changes nothing: the fill is compare-and-set and the run is settled.
      await tenancy.meter.tick();
      expect((await ledger()).map((r) => r.usedCpuMicros)).toEqual(pieces.map((r) => r.usedCpuMicros));
    }, 90_000);
  }
});
