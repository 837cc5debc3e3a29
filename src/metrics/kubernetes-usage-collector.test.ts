import { describe, expect, it } from 'vitest';
import { ManualClock } from '../domain/clock.js';
import type { Logger } from '../domain/logger.js';
import { KubeApiError } from '../runtime/kubernetes/kube-client.js';
import type { PodUsageSample } from '../runtime/kubernetes/pod-metrics.js';
import { KubernetesUsageCollector, type PodMetricsSource } from './kubernetes-usage-collector.js';

const Mi = 2 ** 20;

/** Answers from `table` (Pod name -> cores, working set MiB), or with `failure`; counts calls. */
class TableSource implements PodMetricsSource {
  calls = 0;
  failure: unknown;
  table = new Map<string, { cpuCores: number; memoryMiB: number }>();
  constructor(private readonly clock: ManualClock) {}
  async podMetrics(signal?: AbortSignal): Promise<PodUsageSample[]> {
    this.calls++;
    signal?.throwIfAborted();
    if (this.failure !== undefined) throw this.failure;
    return [...this.table].map(([podName, row]) => ({
      podName,
      namespace: 'ap-default',
      timestampMs: this.clock.now() - 2_000,
      windowMs: 15_000,
      cpuCores: row.cpuCores,
      memoryWorkingSetBytes: row.memoryMiB * Mi,
      memoryLimitBytes: 256 * Mi,
    }));
  }
}

/** A Logger that keeps every line. */
function recordingLogger(): Logger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at =
    (level: string) =>
    (_obj: object, msg?: string): void => {
      lines.push({ level, msg: msg ?? '' });
    };
  const logger = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}

const notFound = (): KubeApiError => new KubeApiError(404, 'NotFound', 'GET /apis/metrics.k8s.io/v1beta1/pods: the server could not find the requested resource');
const unavailable = (): KubeApiError => new KubeApiError(503, 'ServiceUnavailable', 'GET /apis/metrics.k8s.io/v1beta1/pods: the server is currently unable to handle the request');

function setup(options: { absentRetryMs?: number; failureRetryMs?: number } = {}) {
  const clock = new ManualClock(1_800_000_000_000);
  const source = new TableSource(clock);
  const logger = recordingLogger();
  const collector = new KubernetesUsageCollector({ source, clock, logger, nodeId: 'k8s', ...options });
  return { clock, source, logger, collector };
}

describe('KubernetesUsageCollector', () => {
  it('integrates the CPU rate into a counter (rate x seconds since the previous sample) and reports the working set', async () => {
    const { clock, source, collector } = setup();
    source.table.set('ap-a', { cpuCores: 0.25, memoryMiB: 64 });
    const first = (await collector.collect(['ap-a'])).get('ap-a')!;
    expect(first).toEqual({
      containerId: 'ap-a',
      source: 'metrics-api',
      timestampMs: clock.now(),
      cpuUsageSeconds: 0,
      memoryUsageBytes: 64 * Mi,
      memoryWorkingSetBytes: 64 * Mi,
      memoryLimitBytes: 256 * Mi,
      cpuCfsPeriods: 0,
      cpuCfsThrottledPeriods: 0,
      cpuCfsThrottledSeconds: 0,
      pids: null,
      oomKills: null,
    });
    expect(collector.availability).toBe('available');

    clock.advance(10_000);
    const second = (await collector.collect(['ap-a'])).get('ap-a')!;
    expect(second.cpuUsageSeconds).toBeCloseTo(2.5, 9);
    // What the sampler derives from two samples is the API's rate.
    expect((second.cpuUsageSeconds - first.cpuUsageSeconds) / ((second.timestampMs - first.timestampMs) / 1000)).toBeCloseTo(0.25, 9);

    source.table.set('ap-a', { cpuCores: 1.5, memoryMiB: 80 });
    clock.advance(4_000);
    const third = (await collector.collect(['ap-a'])).get('ap-a')!;
    expect(third.cpuUsageSeconds).toBeCloseTo(2.5 + 6, 9);
    expect(third.memoryWorkingSetBytes).toBe(80 * Mi);
  });

  it('answers only for the containers asked for and in the list; forgets those no longer asked for', async () => {
    const { clock, source, collector } = setup();
    source.table.set('ap-a', { cpuCores: 1, memoryMiB: 10 });
    source.table.set('ap-b', { cpuCores: 2, memoryMiB: 20 });
    source.table.set('ap-other-installation', { cpuCores: 3, memoryMiB: 30 });
    const round1 = await collector.collect(['ap-a', 'ap-b', 'ap-not-scraped-yet']);
    expect([...round1.keys()].sort()).toEqual(['ap-a', 'ap-b']);
    expect(source.calls).toBe(1); // one list per round, not one request per Pod

    clock.advance(10_000);
    await collector.collect(['ap-a']); // ap-b stopped running
    clock.advance(10_000);
    const round3 = await collector.collect(['ap-a', 'ap-b']); // ap-b runs again (a new Pod, same name)
    expect(round3.get('ap-a')!.cpuUsageSeconds).toBeCloseTo(20, 9);
    expect(round3.get('ap-b')!.cpuUsageSeconds).toBe(0);
  });

  it('spans a gap (the Pod missing from one list) with the next rate', async () => {
    const { clock, source, collector } = setup();
    source.table.set('ap-a', { cpuCores: 0.5, memoryMiB: 10 });
    await collector.collect(['ap-a']);
    source.table.delete('ap-a');
    clock.advance(10_000);
    expect((await collector.collect(['ap-a'])).size).toBe(0);
    source.table.set('ap-a', { cpuCores: 0.5, memoryMiB: 10 });
    clock.advance(10_000);
    expect((await collector.collect(['ap-a'])).get('ap-a')!.cpuUsageSeconds).toBeCloseTo(10, 9);
  });

  it('a 404 marks the API absent: one info line, no samples, asked again only after absentRetryMs', async () => {
    const { clock, source, logger, collector } = setup({ absentRetryMs: 60_000 });
    source.table.set('ap-a', { cpuCores: 1, memoryMiB: 10 });
    source.failure = notFound();
    for (let round = 0; round < 5; round++) {
      expect((await collector.collect(['ap-a'])).size).toBe(0);
      clock.advance(10_000);
    }
    expect(collector.availability).toBe('absent');
    expect(source.calls).toBe(1);
    clock.advance(10_000); // 60 s since the 404
    await collector.collect(['ap-a']);
    expect(source.calls).toBe(2);
    expect(logger.lines.filter((l) => l.level !== 'debug')).toEqual([{ level: 'info', msg: expect.stringMatching(/does not serve metrics\.k8s\.io/) }]);

    // metrics-server installed meanwhile.
    source.failure = undefined;
    clock.advance(60_000);
    const samples = await collector.collect(['ap-a']);
    expect(samples.get('ap-a')?.memoryWorkingSetBytes).toBe(10 * Mi);
    expect(collector.availability).toBe('available');
    expect(logger.lines.filter((l) => l.level !== 'debug').map((l) => l.level)).toEqual(['info', 'info']);
    expect(logger.lines.at(-1)!.msg).toMatch(/answers again/);
    expect(logger.lines.some((l) => l.level === 'warn' || l.level === 'error')).toBe(false);
  });

  it('other failures (503) warn once per streak and retry after failureRetryMs', async () => {
    const { clock, source, logger, collector } = setup({ failureRetryMs: 20_000 });
    source.table.set('ap-a', { cpuCores: 1, memoryMiB: 10 });
    await collector.collect(['ap-a']);
    source.failure = unavailable();
    for (let round = 0; round < 6; round++) {
      expect((await collector.collect(['ap-a'])).size).toBe(0);
      clock.advance(10_000);
    }
    expect(collector.availability).toBe('failing');
    expect(source.calls).toBe(1 + 3); // at 0 s, 20 s, 40 s
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(1);

    // Back: the counter kept its value and spans the outage with the new rate.
    source.failure = undefined;
    clock.advance(20_000);
    const back = (await collector.collect(['ap-a'])).get('ap-a')!;
    expect(back.cpuUsageSeconds).toBeCloseTo(80, 9);
    expect(collector.availability).toBe('available');
  });

  it('rejects when its own signal aborts, and asks nothing for an empty list', async () => {
    const { source, collector } = setup();
    expect((await collector.collect([])).size).toBe(0);
    expect(source.calls).toBe(0);
    const abort = new AbortController();
    abort.abort();
    await expect(collector.collect(['ap-a'], abort.signal)).rejects.toThrow();
    expect(collector.availability).toBe('unknown');
  });
});
