/**
 * How long one scrape of N containers' resource usage takes: cgroup files (sync and async
 * reads) against Docker's stats API, in the same run on the same containers.
 *
 *   npx tsx bench/metrics-scrape.ts [count=200]
 *
 * Starts `count` sleeping busybox containers (--memory 16m, --network none), times full
 * collections, and removes every container it created at the end, also on Ctrl-C. The Docker
 * stats API is too slow to ask for all N, so it is timed on a small sample and extrapolated;
 * the table says which figures are extrapolated.
 */
import { setMaxListeners } from 'node:events';
import { cpus, loadavg } from 'node:os';
import Dockerode from 'dockerode';
import { CgroupCollector } from '../src/metrics/cgroup/cgroup-collector.js';
import { forEachBounded } from '../src/metrics/cgroup/for-each-bounded.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../test/helpers/busybox-image.js';

const LABEL = 'agent-platform.bench';
const RUN_ID = `metrics-scrape-${process.pid}-${Date.now().toString(36)}`;
const COLLECT_RUNS = 100;
const CREATE_CONCURRENCY = 16;

const count = Number(process.argv[2] ?? 200);
if (!Number.isInteger(count) || count < 20) throw new Error(`count must be an integer >= 20, got ${process.argv[2]}`);

const docker = new Dockerode();
const abort = new AbortController();
// Every in-flight Docker request listens on the one signal; 20 at once is expected, not a leak.
setMaxListeners(0, abort.signal);
let interrupted = 0;
const onSignal = (): void => {
  interrupted++;
  if (interrupted > 1) process.exit(130); // second Ctrl-C: give up on cleanup
  console.error('\ninterrupted: removing containers (Ctrl-C again to quit at once)');
  abort.abort(new Error('interrupted'));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

async function startContainers(n: number, signal: AbortSignal): Promise<string[]> {
  const ids: string[] = [];
  await forEachBounded(
    Array.from({ length: n }, (_, i) => i),
    CREATE_CONCURRENCY,
    async (i) => {
      const container = await docker.createContainer({
        name: `${RUN_ID}-${i}`,
        Image: BUSYBOX_IMAGE,
        Cmd: ['sleep', '3600'],
        Labels: { [LABEL]: RUN_ID },
        HostConfig: { NetworkMode: 'none', Memory: 16 * 1024 * 1024 },
      });
      await container.start();
      ids.push(container.id);
    },
    signal,
  );
  return ids;
}

/** Removes every container of this run, found by label so half-created ones go too. */
async function removeContainers(): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=${RUN_ID}`] } });
  await forEachBounded(list, CREATE_CONCURRENCY, async (c) => {
    await docker.getContainer(c.Id).remove({ force: true });
  });
  return list.length;
}

function percentile(sortedMs: number[], p: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.ceil((p / 100) * sortedMs.length) - 1)] ?? NaN;
}

async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

interface Row {
  method: string;
  measured: string;
  median: number;
  p99: number | null;
  perContainer: number;
  forAll: number;
  extrapolated: boolean;
}

/** The first scrape of a new collector also detects the layout and looks up every path. */
async function timeFirstScrape(ids: string[], signal: AbortSignal): Promise<Row> {
  const collector = new CgroupCollector();
  const ms = await timeMs(() => collector.collect(ids, signal));
  return { method: 'cgroup files, sync, first scrape (path lookup)', measured: `${ids.length} (all), 1 run`, median: ms, p99: null, perContainer: ms / ids.length, forAll: ms, extrapolated: false };
}

async function timeCollector(method: string, collector: CgroupCollector, ids: string[], signal: AbortSignal): Promise<Row> {
  const first = await collector.collect(ids, signal); // resolves and caches every path
  const cgroupSamples = [...first.values()].filter((u) => u.source === 'cgroup').length;
  if (cgroupSamples !== ids.length) throw new Error(`${method}: only ${cgroupSamples}/${ids.length} containers read from cgroup files`);
  const times: number[] = [];
  for (let run = 0; run < COLLECT_RUNS; run++) {
    signal.throwIfAborted();
    times.push(await timeMs(() => collector.collect(ids, signal)));
  }
  times.sort((a, b) => a - b);
  const median = percentile(times, 50);
  return { method, measured: `${ids.length} (all), ${COLLECT_RUNS} runs`, median, p99: percentile(times, 99), perContainer: median / ids.length, forAll: median, extrapolated: false };
}

/** Docker's stats API on a sample: `sequential` one after another, else all at once. */
async function timeDockerStats(method: string, ids: string[], oneShot: boolean, sequential: boolean, signal: AbortSignal): Promise<Row> {
  const stats = (id: string): Promise<unknown> =>
    docker.getContainer(id).stats({ stream: false, 'one-shot': oneShot, abortSignal: signal } as { stream: false; 'one-shot': boolean });
  const elapsed = await timeMs(async () => {
    if (sequential) for (const id of ids) await stats(id);
    else await Promise.all(ids.map(stats));
  });
  const perContainer = elapsed / ids.length;
  // Sequential scales linearly; a parallel batch of k is repeated ceil(N/k) times.
  const forAll = sequential ? perContainer * count : elapsed * Math.ceil(count / ids.length);
  return { method, measured: `${ids.length}, ${sequential ? 'sequential' : 'parallel'}`, median: elapsed, p99: null, perContainer, forAll, extrapolated: ids.length < count };
}

function table(rows: Row[]): string {
  const f = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms >= 1 ? ms.toFixed(1) : ms.toFixed(3));
  const lines = [
    `| method | containers timed | time (median) ms | p99 ms | per container ms | all ${count} ms |`,
    '| --- | --- | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.method} | ${r.measured} | ${f(r.median)} | ${r.p99 === null ? '-' : f(r.p99)} | ${f(r.perContainer)} | ${r.extrapolated ? `~${f(r.forAll)} (extrapolated)` : `${f(r.forAll)} (measured)`} |`,
    ),
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const signal = abort.signal;
  await docker.ping();
  await ensureBusyboxImage();
  const startedAt = Date.now();
  const ids = await startContainers(count, signal);
  console.error(`started ${ids.length} containers in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);

  const rows: Row[] = [];
  rows.push(await timeFirstScrape(ids, signal));
  rows.push(await timeCollector('cgroup files, sync reads (default)', new CgroupCollector({ readMode: 'sync' }), ids, signal));
  rows.push(await timeCollector('cgroup files, async reads (fs.promises, 16 at once)', new CgroupCollector({ readMode: 'async' }), ids, signal));
  rows.push(await timeCollector('cgroup files, async reads (fs.promises, 64 at once)', new CgroupCollector({ readMode: 'async', readConcurrency: 64 }), ids, signal));
  const sample = ids.slice(0, 20);
  rows.push(await timeDockerStats('Docker stats API, one-shot (our fallback)', sample.slice(0, 5), true, true, signal));
  rows.push(await timeDockerStats('Docker stats API, one-shot (our fallback)', sample, true, false, signal));
  rows.push(await timeDockerStats('Docker stats API, stream=false (default)', sample.slice(0, 5), false, true, signal));
  rows.push(await timeDockerStats('Docker stats API, stream=false (default)', sample, false, false, signal));

  // Timings on a shared machine mean little without how busy it was.
  const load = loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(`\nmetrics scrape of ${count} running containers (node ${process.version}, cgroup ${String(new CgroupCollector().layout.version)}, ${cpus().length} CPUs, load average ${load})\n`);
  console.log(table(rows));
  console.log('\ncgroup rows: one full collection of all containers, median and p99 over the runs, paths cached.');
  console.log('Docker rows: one timed pass over the sample; "all" is extrapolated from it, not measured.');
}

let exitCode = 0;
try {
  await main();
} catch (error) {
  exitCode = abort.signal.aborted ? 130 : 1;
  if (!abort.signal.aborted) console.error(error);
} finally {
  const removed = await removeContainers();
  console.error(`removed ${removed} containers`);
}
process.exit(exitCode);
