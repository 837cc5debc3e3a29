/**
 * Create -> Running latency of the platform against raw Docker, in one run.
 *
 *   npx tsx bench/start-latency.ts [N=30] [--private-daemon]
 *
 * Four measurements per iteration, interleaved (order rotated every iteration) so they
 * share the machine's conditions; 3 warm-up iterations of each are discarded:
 * - platform (event): POST /api/v1/agents until the bus publishes PhaseChanged to
 *   Running for that agent, timestamped in the listener (in-process, no polling).
 * - platform (poll 10 ms): the same agent as an HTTP client sees it, polling GET
 *   /api/v1/agents/:id every 10 ms after the POST answered.
 * - docker run -d: the CLI with the flags read from the platform's own container
 *   (docker inspect), returning once the container is started.
 * - dockerode create+start: the same config through the Engine API, no CLI.
 * Containers are removed after each measurement, outside the timed region.
 *
 * The platform runs in this process (buildPlatform, SQLite in a temp dir, log level
 * silent, random port). Its store and Docker runtime are wrapped in a tracer, so the
 * report also says where the platform's time goes, step by step.
 *
 * --private-daemon starts a dockerd of its own for the run (root only), so that other
 * work on the machine's daemon (tests creating containers) does not queue with ours.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { loadConfig } from '../src/config.js';
import { buildPlatform } from '../src/platform.js';
import { openStore } from '../src/store/open-store.js';
import type { Store } from '../src/store/store.js';
import { DockerRuntime } from '../src/runtime/docker/docker-runtime.js';
import { parseDockerHost } from '../src/runtime/docker/docker-host.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { ensureBusyboxImage, BUSYBOX_IMAGE } from '../test/helpers/busybox-image.js';
import { startPrivateDockerDaemon, type PrivateDockerDaemon } from '../test/crash/private-docker-daemon.js';
import { CallTracer } from './lib/call-tracer.js';
import { summarize, type LatencySummary } from './lib/latency-summary.js';
import { formatMs, markdownTable } from './lib/markdown-table.js';

const exec = promisify(execFile);
const WARMUP = 3;
const TOKEN = 'bench-start-latency-token';
const BENCH_LABEL = 'io.agent-platform.bench';

/** Undone in reverse order at the end, also when the run fails half-way. */
const teardown: (() => Promise<unknown>)[] = [];
async function runTeardown(): Promise<void> {
  for (const step of teardown.splice(0).reverse()) await step().catch((err: unknown) => console.error('teardown:', err));
}

type Kind = 'platform' | 'docker run -d' | 'dockerode create+start';

interface Inspect {
  Id: string;
  Config: { Image: string; User: string; Env: string[] | null; Entrypoint: string[] | null; Cmd: string[] | null; Labels: Record<string, string> | null };
  HostConfig: {
    ReadonlyRootfs: boolean;
    CapDrop: string[] | null;
    SecurityOpt: string[] | null;
    NetworkMode: string;
    Memory: number;
    MemorySwap: number;
    NanoCpus: number;
    CpuShares: number;
    PidsLimit: number | null;
    Tmpfs: Record<string, string> | null;
    Ulimits: { Name: string; Soft: number; Hard: number }[] | null;
    LogConfig: { Type: string; Config: Record<string, string> };
    RestartPolicy: { Name: string; MaximumRetryCount: number };
    Init: boolean | null;
  };
}

/** The platform's own container, as `docker run` flags (platform labels swapped for a bench label). */
function dockerRunArgs(c: Inspect): string[] {
  const h = c.HostConfig;
  const args: string[] = [];
  if (h.ReadonlyRootfs) args.push('--read-only');
  args.push('--user', c.Config.User);
  for (const cap of h.CapDrop ?? []) args.push('--cap-drop', cap);
  for (const opt of h.SecurityOpt ?? []) args.push('--security-opt', opt);
  args.push('--network', h.NetworkMode);
  args.push('--memory', `${h.Memory}b`, '--memory-swap', `${h.MemorySwap}b`);
  args.push('--cpus', String(h.NanoCpus / 1e9), '--cpu-shares', String(h.CpuShares));
  if (h.PidsLimit) args.push('--pids-limit', String(h.PidsLimit));
  for (const [path, opts] of Object.entries(h.Tmpfs ?? {})) args.push('--tmpfs', `${path}:${opts}`);
  for (const u of h.Ulimits ?? []) args.push('--ulimit', `${u.Name}=${u.Soft}:${u.Hard}`);
  args.push('--log-driver', h.LogConfig.Type);
  for (const [k, v] of Object.entries(h.LogConfig.Config)) args.push('--log-opt', `${k}=${v}`);
  for (const e of c.Config.Env ?? []) args.push('-e', e);
  args.push('--label', `${BENCH_LABEL}=true`);
  const entrypoint = c.Config.Entrypoint ?? [];
  if (entrypoint.length > 0) args.push('--entrypoint', entrypoint[0]!);
  args.push(c.Config.Image, ...entrypoint.slice(1), ...(c.Config.Cmd ?? []));
  return args;
}

/** The same container as an Engine API create body. */
function createBody(c: Inspect): Docker.ContainerCreateOptions {
  const h = c.HostConfig;
  return {
    Image: c.Config.Image,
    User: c.Config.User,
    Env: c.Config.Env ?? [],
    ...(c.Config.Entrypoint ? { Entrypoint: c.Config.Entrypoint } : {}),
    ...(c.Config.Cmd ? { Cmd: c.Config.Cmd } : {}),
    Labels: { [BENCH_LABEL]: 'true' },
    HostConfig: {
      ReadonlyRootfs: h.ReadonlyRootfs,
      CapDrop: h.CapDrop ?? [],
      SecurityOpt: h.SecurityOpt ?? [],
      NetworkMode: h.NetworkMode,
      Memory: h.Memory,
      MemorySwap: h.MemorySwap,
      NanoCpus: h.NanoCpus,
      CpuShares: h.CpuShares,
      ...(h.PidsLimit ? { PidsLimit: h.PidsLimit } : {}),
      Tmpfs: h.Tmpfs ?? {},
      Ulimits: h.Ulimits ?? [],
      LogConfig: h.LogConfig,
      RestartPolicy: h.RestartPolicy,
      Init: h.Init ?? false,
    },
  };
}

const agentIdOf = (method: string, args: unknown[]): string | undefined => {
  const [first] = args;
  if (typeof first === 'string') return method === 'getAgentByName' ? undefined : first;
  if (typeof first === 'object' && first !== null) {
    const o = first as { id?: unknown; objectId?: unknown; agentId?: unknown };
    for (const v of [o.agentId, o.objectId, o.id]) if (typeof v === 'string') return v;
  }
  return undefined;
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const n = Number(argv.find((a) => /^\d+$/.test(a)) ?? 30);
  const usePrivateDaemon = argv.includes('--private-daemon');
  const pollArg = argv.find((a) => a.startsWith('--poll-ms='));
  // 0 turns the polling client off (then it cannot load the event loop it measures).
  const pollIntervalMs = pollArg ? Number(pollArg.slice('--poll-ms='.length)) : 10;
  const command = `npx tsx bench/start-latency.ts ${n}${usePrivateDaemon ? ' --private-daemon' : ''}${pollArg ? ` ${pollArg}` : ''}`;

  let daemon: PrivateDockerDaemon | undefined;
  let dockerHost = process.env.DOCKER_HOST;
  await ensureBusyboxImage(dockerHost);
  if (usePrivateDaemon) {
    daemon = await startPrivateDockerDaemon([BUSYBOX_IMAGE], dockerHost);
    teardown.push(daemon.stop);
    dockerHost = daemon.dockerHost;
  } else {
    process.stderr.write('note: sharing the Docker daemon with whatever else uses it (--private-daemon starts one for this run)\n');
  }
  const endpoint = parseDockerHost(dockerHost);
  const docker = endpoint.kind === 'unix' ? new Docker({ socketPath: endpoint.socketPath }) : new Docker({ host: endpoint.host, port: endpoint.port });
  const hostArgs = dockerHost ? ['-H', dockerHost] : [];
  // Raw containers a failed iteration left behind (names carry this process id).
  teardown.push(async () => {
    const left = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=true`] } });
    const ours = left.filter((c) => c.Names.some((name) => name.includes(`-${process.pid}-`)));
    await Promise.all(ours.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true })));
  });
  const version = await docker.version();

  const dataDir = await mkdtemp(join(tmpdir(), 'bench-start-latency-'));
  teardown.push(() => rm(dataDir, { recursive: true, force: true }));
  const tracer = new CallTracer();
  const config = loadConfig({ AGENT_PLATFORM_DATA_DIR: dataDir, AGENT_PLATFORM_ADMIN_TOKEN: TOKEN, AGENT_PLATFORM_PORT: '0', AGENT_PLATFORM_LOG_LEVEL: 'silent', DOCKER_HOST: dockerHost });
  // Who called: the controller or the API (the polling client's GETs); from the stack,
  // which costs some microseconds per call, the same for every sample.
  const callerOf = (): string | undefined => {
    const stack = new Error().stack ?? '';
    if (stack.includes('/controllers/')) return 'controller';
    if (stack.includes('/services/') || stack.includes('/api/')) return 'api';
    return undefined;
  };
  const store = tracer.wrap<Store>(await openStore(undefined, dataDir), 'store', agentIdOf, (m) => m === 'createAgent', callerOf);
  const containerOwner = new Map<string, string>();
  // Learns container ids, so start(containerId) can be traced to its agent.
  class OwnerTrackingRuntime extends DockerRuntime {
    override async create(spec: Parameters<DockerRuntime['create']>[0], signal?: AbortSignal): Promise<string> {
      const id = await super.create(spec, signal);
      containerOwner.set(id, spec.agentId);
      return id;
    }
  }
  const rawRuntime = new OwnerTrackingRuntime({ nodeId: config.nodeName, dockerHost });
  const runtime = tracer.wrap<Runtime>(rawRuntime, 'docker', (method, args) => {
    if (method === 'create') {
      return (args[0] as { agentId: string }).agentId;
    }
    const ref = args[0];
    if (typeof ref !== 'string') return undefined;
    return ref.startsWith('ap-') ? ref.slice(3) : containerOwner.get(ref);
  });
  const platform = await buildPlatform(config, { store, runtimes: [runtime] });
  teardown.push(() => platform.close());
  const base = await platform.start();

  const runningAt = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  platform.bus.subscribe((e) => {
    const data = e.data as { to?: string } | undefined;
    if (e.reason === 'PhaseChanged' && data?.to === 'Running') {
      const now = performance.now();
      runningAt.set(e.objectId, now);
      tracer.mark(e.objectId, 'bus: PhaseChanged -> Running', now);
      tracer.close(e.objectId);
      waiters.get(e.objectId)?.();
    }
  });
  const auth = { authorization: `Bearer ${TOKEN}` };
  const agentBody = (i: number): string => JSON.stringify({ name: `bench-${i}`, image: BUSYBOX_IMAGE, command: ['sleep', '30'] });

  interface PlatformSample {
    eventMs: number;
    pollMs: number;
    answeredMs: number;
    steps: { label: string; startMs: number; durationMs: number }[];
    agentId: string;
    containerId: string;
  }

  async function platformRun(i: number): Promise<PlatformSample> {
    const t0 = performance.now();
    const res = await fetch(`${base}/api/v1/agents`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: agentBody(i) });
    const answeredMs = performance.now() - t0;
    const created = (await res.json()) as { id: string };
    if (res.status !== 201) throw new Error(`POST /api/v1/agents: ${res.status} ${JSON.stringify(created)}`);
    const id = created.id;
    const event = new Promise<void>((resolve) => {
      if (runningAt.has(id)) resolve();
      else waiters.set(id, resolve);
    });
    let pollMs: number | undefined;
    let containerId = '';
    const pollDeadline = t0 + 60_000;
    if (pollIntervalMs <= 0) {
      await event;
      pollMs = Number.NaN;
    }
    while (pollMs === undefined) {
      const r = await fetch(`${base}/api/v1/agents/${id}`, { headers: auth });
      const a = (await r.json()) as { status: { phase: string; containerId?: string; message?: string } };
      if (a.status.phase === 'Running') {
        pollMs = performance.now() - t0;
        containerId = a.status.containerId ?? '';
      } else if (a.status.phase === 'Failed' || performance.now() > pollDeadline) {
        throw new Error(`agent ${id} did not run: ${a.status.phase} ${a.status.message ?? ''}`);
      } else {
        await sleep(pollIntervalMs);
      }
    }
    await event;
    waiters.delete(id);
    if (!containerId) containerId = (await platform.store.getAgent(id))?.status.containerId ?? '';
    const eventMs = runningAt.get(id)! - t0;
    const steps = tracer.callsOf(id).map((c) => ({ label: c.label, startMs: c.startMs - t0, durationMs: (c.endMs ?? c.startMs) - c.startMs }));
    steps.push({ label: 'client: POST answered', startMs: answeredMs, durationMs: 0 });
    tracer.forget(id);
    runningAt.delete(id);
    return { eventMs, pollMs, answeredMs, steps, agentId: id, containerId };
  }

  async function deleteAgent(id: string): Promise<void> {
    const r = await fetch(`${base}/api/v1/agents/${id}`, { method: 'DELETE', headers: auth });
    await r.body?.cancel();
    if (r.status !== 200) throw new Error(`DELETE agent ${id}: ${r.status}`);
  }

  // A first agent only to learn the exact container config the platform uses.
  const probe = await platformRun(-1);
  const inspect = (await docker.getContainer(probe.containerId).inspect()) as unknown as Inspect;
  await deleteAgent(probe.agentId);
  const runArgs = dockerRunArgs(inspect);
  const body = createBody(inspect);

  const samples: Record<'event' | 'poll' | 'answered' | 'cli' | 'api' | 'apiCreate' | 'apiStart', number[]> = {
    event: [],
    poll: [],
    answered: [],
    cli: [],
    api: [],
    apiCreate: [],
    apiStart: [],
  };
  const stepSamples: PlatformSample['steps'][] = [];
  const kinds: Kind[] = ['platform', 'docker run -d', 'dockerode create+start'];
  const total = WARMUP + n;
  for (let it = 0; it < total; it++) {
    const measured = it >= WARMUP;
    const order = kinds.map((_, k) => kinds[(k + it) % kinds.length]!);
    for (const kind of order) {
      if (kind === 'platform') {
        const s = await platformRun(it);
        await deleteAgent(s.agentId);
        if (measured) {
          samples.event.push(s.eventMs);
          samples.poll.push(s.pollMs);
          samples.answered.push(s.answeredMs);
          stepSamples.push(s.steps);
        }
      } else if (kind === 'docker run -d') {
        const name = `bench-cli-${process.pid}-${it}`;
        const t0 = performance.now();
        await exec('docker', [...hostArgs, 'run', '-d', '--name', name, ...runArgs]);
        const ms = performance.now() - t0;
        await docker.getContainer(name).remove({ force: true, v: true });
        if (measured) samples.cli.push(ms);
      } else {
        const name = `bench-api-${process.pid}-${it}`;
        const t0 = performance.now();
        const c = await docker.createContainer({ ...body, name });
        const t1 = performance.now();
        await c.start();
        const t2 = performance.now();
        await c.remove({ force: true, v: true });
        if (measured) {
          samples.api.push(t2 - t0);
          samples.apiCreate.push(t1 - t0);
          samples.apiStart.push(t2 - t1);
        }
      }
    }
    process.stderr.write(`\r${it + 1}/${total}${measured ? '' : ' (warm-up)'}   `);
  }
  process.stderr.write('\n');

  await runTeardown();

  // ---- report ----------------------------------------------------------------------
  const rows: [string, LatencySummary][] = [
    ['platform: POST -> PhaseChanged Running (bus event)', summarize(samples.event)],
    ...(pollIntervalMs > 0 ? [[`platform: POST -> Running seen by a client polling every ${pollIntervalMs} ms`, summarize(samples.poll)] as [string, LatencySummary]] : []),
    ['platform: POST answered (201)', summarize(samples.answered)],
    ['raw: docker run -d (CLI, returns after start)', summarize(samples.cli)],
    ['raw: dockerode create + start', summarize(samples.api)],
  ];
  rows.push(['raw: dockerode create (part of the above)', summarize(samples.apiCreate)], ['raw: dockerode start (part of the above)', summarize(samples.apiStart)]);
  // The platform's own time: the total minus its Docker create and start calls, which
  // vary with the daemon as much as the raw runs do. Robust to a noisy machine.
  const ownMs = stepSamples.map((steps, i) => {
    const dockerMs = steps.filter((st) => /^docker\.(create|start)#/.test(st.label)).reduce((sum, st) => sum + st.durationMs, 0);
    return samples.event[i]! - dockerMs;
  });
  rows.push(['platform: own time (total minus its Docker create + start calls)', summarize(ownMs)]);
  const event = summarize(samples.event);
  const cli = summarize(samples.cli);
  const api = summarize(samples.api);
  console.log(`\n## Start latency: create -> Running (N=${n} per kind after ${WARMUP} warm-up, interleaved)\n`);
  console.log(`Command: \`${command}\`${dockerHost ? ` (Docker at ${usePrivateDaemon ? 'a private daemon' : dockerHost})` : ''}`);
  console.log(`Machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, Docker Engine ${version.Version} (API ${version.ApiVersion}), store sqlite, image ${BUSYBOX_IMAGE}\n`);
  console.log(
    markdownTable(
      ['measurement', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'min ms', 'max ms'],
      rows.map(([name, s]) => [name, formatMs(s.p50Ms), formatMs(s.p90Ms), formatMs(s.p99Ms), formatMs(s.meanMs), formatMs(s.minMs), formatMs(s.maxMs)]),
      new Set([1, 2, 3, 4, 5, 6]),
    ),
  );
  const ratioApi = event.p50Ms / api.p50Ms;
  const ratioCli = event.p50Ms / cli.p50Ms;
  console.log(`\nRatio platform (event) / raw at p50: ${ratioApi.toFixed(2)} vs dockerode create+start, ${ratioCli.toFixed(2)} vs docker run -d (target <= 1.15)`);

  // Where the platform's time goes: each traced call's mean start and duration.
  const byLabel = new Map<string, { starts: number[]; durations: number[] }>();
  let pollerReads = 0;
  for (const steps of stepSamples) {
    for (const s of steps) {
      // The polling client's GETs: counted, not listed one by one.
      if (s.label.startsWith('api: store.getAgent#')) {
        pollerReads++;
        continue;
      }
      const entry = byLabel.get(s.label) ?? { starts: [], durations: [] };
      entry.starts.push(s.startMs);
      entry.durations.push(s.durationMs);
      byLabel.set(s.label, entry);
    }
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const stepRows = [...byLabel]
    .map(([label, e]) => ({ label, start: mean(e.starts), duration: mean(e.durations), seen: e.starts.length }))
    .sort((a, b) => a.start - b.start);
  console.log(`\n### Platform steps (mean over ${stepSamples.length} agents; ms after the client sent POST)\n`);
  console.log(
    markdownTable(
      ['step', 'starts at ms', 'takes ms', 'seen in'],
      stepRows.map((r) => [r.label, formatMs(r.start), formatMs(r.duration), `${r.seen}/${stepSamples.length}`]),
      new Set([1, 2]),
    ),
  );
  if (pollerReads > 0) console.log(`\n(Not listed: ${(pollerReads / stepSamples.length).toFixed(1)} store reads per agent by the polling client's GETs.)`);
  console.log(`\ndocker run flags used (from the platform's container): docker run -d --name NAME ${runArgs.map((a) => (/[\s,=:]/.test(a) && !a.startsWith('-') ? `'${a}'` : a)).join(' ')}`);
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    console.error(err);
    await runTeardown();
    process.exit(1);
  },
);
