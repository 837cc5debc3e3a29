/**
 * AGENT_PLATFORM_USAGE_RETENTION_MS set short: GET /api/v1/agents/{id}/metrics keeps only
 * the points of the last retention window, dropping older ones while the agent runs on. The
 * platform runs in-process (real dockerd, SQLite in a temp dir) and samples a busybox
 * agent every 200 ms with a 1 s retention (the smallest the config accepts).
 *
 * Needs Docker; fails when CI=true and Docker is missing, skips otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { TestPlatform, sleep, uniqueName } from '../integration/harness.js';

const hasDocker = await requireDocker();
const USAGE_INTERVAL_MS = 200;
const RETENTION_MS = 1_000;

interface History {
  agentId: string;
  intervalMs: number;
  retentionMs: number;
  points: { time: string; cpuCores: number | null; memoryWorkingSetBytes: number }[];
}

describe.skipIf(!hasDocker)('usage history retention (real dockerd)', () => {
  let p: TestPlatform;

  beforeAll(async () => {
    await ensureBusyboxImage();
    p = await TestPlatform.start({ env: { AGENT_PLATFORM_USAGE_INTERVAL_MS: String(USAGE_INTERVAL_MS), AGENT_PLATFORM_USAGE_RETENTION_MS: String(RETENTION_MS) } });
  }, 60_000);

  afterAll(async () => {
    await p?.close();
  }, 60_000);

  it('drops history points older than the configured retention', async () => {
    const image = await ensureBusyboxImage();
    const a = await p.create({ name: uniqueName('ret'), image, command: ['sh', '-c', 'sleep 300'], resources: { cpu: '100m', memory: '16Mi' } });
    await p.waitFor(a.id, (x) => x.status.phase === 'Running', 30_000, 'Running');
    const history = async (): Promise<History> => {
      const res = await p.request<History>('GET', `/api/v1/agents/${a.id}/metrics?range=15m`);
      expect(res.status, res.text).toBe(200);
      return res.json;
    };

    // The first points, as soon as there are some.
    const deadline = Date.now() + 20_000;
    let first = await history();
    while (first.points.length === 0) {
      if (Date.now() > deadline) throw new Error('no usage points within 20 s');
      await sleep(50);
      first = await history();
    }
    expect(first.retentionMs).toBe(RETENTION_MS);
    expect(first.intervalMs).toBe(USAGE_INTERVAL_MS);
    const firstPointMs = Date.parse(first.points[0]!.time);

    // Sampled for well over the retention: without it the range would hold ~15 points by now.
    await sleep(3 * RETENTION_MS);
    const askedAt = Date.now();
    const later = await history();
    const times = later.points.map((pt) => Date.parse(pt.time));
    // Still sampling...
    expect(times.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...times)).toBeGreaterThan(firstPointMs + 2 * RETENTION_MS);
    // ...but the early points are gone, and none is older than the retention as of the last
    // round (pruning runs each round; a round on a loaded machine may come late: 1 s grace).
    expect(times).not.toContain(firstPointMs);
    expect(Math.min(...times), JSON.stringify(later.points.map((pt) => pt.time))).toBeGreaterThanOrEqual(askedAt - RETENTION_MS - USAGE_INTERVAL_MS - 1_000);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(Math.max(...times) - RETENTION_MS - USAGE_INTERVAL_MS);
    // About one retention's worth of rounds (5 at 200 ms); rounds that ran late and then
    // caught up sit closer together, so allow twice that, still far from the ~15 unpruned.
    expect(times.length).toBeLessThanOrEqual((2 * RETENTION_MS) / USAGE_INTERVAL_MS + 2);
  }, 60_000);
});
