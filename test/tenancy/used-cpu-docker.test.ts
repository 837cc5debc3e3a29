/**
 * Used CPU seconds in the usage ledger, from a real busy Docker container: the meter's
 * pieces carry the CPU the container's cgroup counted, the first piece of the run included
 * (its baseline is the container's start), and the usage endpoint reports their sum.
 *
 * The sampler and the meter are driven by hand (their loops are set to hours), so each
 * ledger piece ends at a sample this test took next to its own cgroup reading.
 * Needs Docker: fails when CI=true and Docker is missing, skips otherwise.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { TestPlatform, sleep, uniqueName } from '../integration/harness.js';

const hasDocker = await requireDocker();

/** CPU time of a Docker container in seconds, straight from its cgroup (v1 cpuacct or v2 cpu.stat): the ground truth. */
function cgroupCpuSeconds(containerId: string): number {
  for (const p of [`/sys/fs/cgroup/cpu,cpuacct/docker/${containerId}/cpuacct.usage`, `/sys/fs/cgroup/cpuacct/docker/${containerId}/cpuacct.usage`]) {
    if (existsSync(p)) return Number(readFileSync(p, 'utf8').trim()) / 1e9;
  }
  for (const dir of [`/sys/fs/cgroup/docker/${containerId}`, `/sys/fs/cgroup/system.slice/docker-${containerId}.scope`]) {
    const p = join(dir, 'cpu.stat');
    if (existsSync(p)) {
      const m = /^usage_usec (\d+)$/m.exec(readFileSync(p, 'utf8'));
      if (m) return Number(m[1]) / 1e6;
    }
  }
  throw new Error(`no cgroup CPU accounting found for container ${containerId}`);
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
    // A sample, the ground truth next to it, then the piece up to now.
    const accrue = async (): Promise<number> => {
      await usage.sampleOnce();
      const truth = cgroupCpuSeconds(containerId);
      await tenancy.meter.tick();
      return truth;
    };

    await sleep(1500);
    const first = await accrue();
    const afterFirst = await ledger();
    expect(afterFirst).toHaveLength(1);
    // The first piece starts at the run's start and carries the CPU used since the container started.
    expect(afterFirst[0]!.usedCpuMicros, 'first piece has used CPU').toBeDefined();
    expect(afterFirst[0]!.usedCpuMicros! / 1e6).toBeGreaterThan(0.2);
    expect(Math.abs(afterFirst[0]!.usedCpuMicros! / 1e6 - first)).toBeLessThan(0.1);

    await sleep(2000);
    const second = await accrue();
    await sleep(1000);
    const third = await accrue();
    const pieces = await ledger();
    expect(pieces).toHaveLength(3);
    for (const r of pieces) expect(r.usedCpuMicros, `piece ${r.startMs}..${r.endMs}`).toBeDefined();
    // Each piece is the counter's growth over it; together they are the counter itself.
    expect(Math.abs(pieces[1]!.usedCpuMicros! / 1e6 - (second - first))).toBeLessThan(0.1);
    expect(Math.abs(pieces[2]!.usedCpuMicros! / 1e6 - (third - second))).toBeLessThan(0.1);
    const usedSeconds = pieces.reduce((s, r) => s + r.usedCpuMicros!, 0) / 1e6;
    expect(Math.abs(usedSeconds - third)).toBeLessThan(0.15);
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
  }, 90_000);
});
