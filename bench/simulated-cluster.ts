/**
 * Agents created through the API onto a simulated cluster, until all are Running.
 *
 *   npx tsx bench/simulated-cluster.ts [--agents 100000] [--nodes 5000] [--store sqlite|postgres|both]
 *                                      [--concurrency 256] [--transport http|inject|both]
 *                                      [--reconcile-concurrency 16] [--heap-mib N] [--semi-space-mib N] [--cpu-prof DIR]
 *                                      [--env AGENT_PLATFORM_X=value ...]
 *
 * Each measurement runs in a fresh child process (this file, forked with --phase), so
 * its peak RSS is its own and one phase's garbage does not slow the next:
 * - platform: buildPlatform with `--nodes` simulated nodes (16 CPU, 64Gi each; agents run
 *   until stopped), log level silent, rate limits off, SQLite in a temp dir or a fresh
 *   PostgreSQL database ap_bench_<random> (dropped afterwards). `--agents` POSTs to
 *   /api/v1/agents (cpu 10m, memory 16Mi each) with `--concurrency` requests in flight;
 *   a PhaseChanged event with to=Running, timestamped in the bus listener, ends each agent.
 *   Transport http (the headline): real HTTP over loopback with keep-alive from a load
 *   client in a child process of its own (the second core), so client CPU does not come
 *   out of the server's event loop. Transport inject: Fastify's app.inject in-process
 *   (no sockets, no client process; the platform then shares its core with nothing).
 * - store inserts (baseline, the floor the API path cannot beat): the same agents written
 *   with store.createAgent, `--concurrency` in flight, on a fresh store of the same kind.
 * - bare Fastify (baseline, the HTTP floor): a Fastify app answering the same POST bodies
 *   with 201 and an id and doing nothing else, driven by the same load client.
 *
 * Figures: create/s (POST acks per second, first send to last ack), end-to-end agents/s
 * (first send until the last agent is Running), p50/p99 of POST ack and of create ->
 * Running, and peak RSS and heap of the process under test (sampled every 100 ms).
 *
 * Diagnostics: `--cpu-prof DIR` profiles the platform phases (node --cpu-prof);
 * BENCH_HEAP_SNAPSHOT=file writes a heap snapshot once every agent is Running.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { buildPlatform } from '../src/platform.js';
import { openStore } from '../src/store/open-store.js';
import { MemoryBus } from '../src/bus/memory-bus.js';
import { systemClock } from '../src/domain/clock.js';
import { EventRecorder } from '../src/controllers/event-recorder.js';
import { AgentService, newAgentId } from '../src/services/agent-service.js';
import { CreateAgentRequest } from '../src/api/schemas/agent-schema.js';
import { epochMs, type LoadRequest, type LoadResult } from './lib/http-load-client.js';
import { MemorySampler } from './lib/memory-sampler.js';
import { percentile } from './lib/latency-summary.js';
import { formatMs, markdownTable } from './lib/markdown-table.js';

const TOKEN = 'bench-simulated-cluster-token';
const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BODY_TEMPLATE = { image: 'agent-platform/sim:latest', resources: { cpu: '10m', memory: '16Mi' } } as const;
const SELF = fileURLToPath(import.meta.url);
// Compiled (npm run bench:build) the bench runs as .js; under tsx as .ts.
const LOAD_CLIENT = fileURLToPath(new URL(`./lib/http-load-client.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));

type StoreKind = 'sqlite' | 'postgres';
type Transport = 'http' | 'inject';

interface Options {
  agents: number;
  nodes: number;
  stores: StoreKind[];
  concurrency: number;
  transports: Transport[];
  reconcileConcurrency: number;
  /** --max-old-space-size of the platform phases; undefined: Node's default. */
  heapMiB: number | undefined;
  /** --max-semi-space-size of the platform phases (the young generation); undefined: Node's default. */
  semiSpaceMiB: number | undefined;
  cpuProfDir: string | undefined;
  /** Extra platform config (AGENT_PLATFORM_* variables), e.g. to try a setting at scale. */
  env: Record<string, string>;
}

type PhaseSpec =
  | { kind: 'platform'; store: StoreKind; transport: Transport; agents: number; nodes: number; concurrency: number; reconcileConcurrency: number; env: Record<string, string> }
  | { kind: 'store-inserts'; store: StoreKind; agents: number; concurrency: number }
  | { kind: 'bare-fastify'; agents: number; concurrency: number };

interface PhaseResult {
  label: string;
  store: string;
  agents: number;
  /** Requests (or inserts) that succeeded. */
  ok: number;
  createPerSec: number;
  ackP50Ms: number;
  ackP99Ms: number;
  /** Only for the platform: every agent Running. */
  running?: number;
  e2ePerSec?: number;
  runP50Ms?: number;
  runP99Ms?: number;
  /** Seconds from first POST to last Running. */
  e2eSeconds?: number;
  peakRssMiB: number;
  peakHeapUsedMiB: number;
  /** RSS before the load (platform built and started, nodes Ready). */
  idleRssMiB: number;
  failures: Record<string, { count: number; firstBody: string }>;
}

function parseArgs(argv: string[]): Options {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const int = (name: string, def: number): number => {
    const v = value(name);
    if (v === undefined) return def;
    const n = Number(v.replace(/_/g, ''));
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${v}"`);
    return n;
  };
  const store = value('store') ?? 'both';
  if (!['sqlite', 'postgres', 'both'].includes(store)) throw new Error(`--store must be sqlite, postgres or both, got "${store}"`);
  const transport = value('transport') ?? 'http';
  if (!['http', 'inject', 'both'].includes(transport)) throw new Error(`--transport must be http, inject or both, got "${transport}"`);
  return {
    agents: int('agents', 100_000),
    nodes: int('nodes', 5_000),
    stores: store === 'both' ? ['sqlite', 'postgres'] : [store as StoreKind],
    concurrency: int('concurrency', 256),
    transports: transport === 'both' ? ['http', 'inject'] : [transport as Transport],
    reconcileConcurrency: int('reconcile-concurrency', 16),
    heapMiB: value('heap-mib') === undefined ? undefined : int('heap-mib', 0),
    semiSpaceMiB: value('semi-space-mib') === undefined ? undefined : int('semi-space-mib', 0),
    cpuProfDir: value('cpu-prof'),
    env: Object.fromEntries(
      argv.flatMap((a, i) => {
        if (argv[i - 1] !== '--env') return [];
        const m = /^(AGENT_PLATFORM_[A-Z0-9_]+)=(.*)$/.exec(a);
        if (!m) throw new Error(`--env takes AGENT_PLATFORM_NAME=value, got "${a}"`);
        return [[m[1]!, m[2]!]];
      }),
    ),
  };
}

// ---------------------------------------------------------------------------------------
// Phases (each in its own process)

/** A database of its own for one phase; dropped by the returned function. */
async function createPgDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `ap_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** The store URL of a phase and what undoes it. */
async function storeFor(kind: StoreKind): Promise<{ url: string | undefined; dataDir: string; cleanup: () => Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ap-simbench-'));
  const rmDir = () => rm(dataDir, { recursive: true, force: true });
  if (kind === 'sqlite') return { url: undefined, dataDir, cleanup: rmDir };
  const db = await createPgDatabase();
  return {
    url: db.url,
    dataDir,
    cleanup: async () => {
      await db.drop();
      await rmDir();
    },
  };
}

/** Runs the HTTP load in a forked client process (its own core). */
function forkLoad(req: Omit<LoadRequest, 'type'>): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = fork(LOAD_CLIENT, ['--http-load-child'], { execArgv: process.execArgv.filter((a) => !a.startsWith('--cpu-prof')), stdio: 'inherit' });
    let result: LoadResult | undefined;
    child.on('message', (m: LoadResult) => {
      result = m;
    });
    child.on('error', reject);
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`load client exited with code ${code} and no result`))));
    child.send({ type: 'run', ...req } satisfies LoadRequest);
  });
}

/** The same requests through app.inject, in this process. */
async function injectLoad(inject: (body: string) => Promise<{ statusCode: number; body: string }>, count: number, concurrency: number): Promise<LoadResult> {
  const sentAtMs = new Array<number>(count).fill(0);
  const ackedAtMs = new Array<number>(count).fill(0);
  const ids = new Array<string>(count).fill('');
  const failures: LoadResult['failures'] = {};
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      sentAtMs[i] = epochMs();
      const res = await inject(JSON.stringify({ ...BODY_TEMPLATE, name: `agent-${i}` }));
      ackedAtMs[i] = epochMs();
      if (res.statusCode >= 200 && res.statusCode < 300) ids[i] = /"id":"([^"]+)"/.exec(res.body)?.[1] ?? '';
      else (failures[String(res.statusCode)] ??= { count: 0, firstBody: res.body.slice(0, 500) }).count++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { type: 'result', sentAtMs, ackedAtMs, ids, failures };
}

/** Acks per second and ack latency of a load result. */
function ackFigures(r: LoadResult): { ok: number; createPerSec: number; ackP50Ms: number; ackP99Ms: number; firstSentMs: number } {
  const ok = r.ids.filter((id) => id !== '').length;
  let first = Infinity;
  let last = 0;
  const acks: number[] = [];
  for (let i = 0; i < r.sentAtMs.length; i++) {
    first = Math.min(first, r.sentAtMs[i]!);
    last = Math.max(last, r.ackedAtMs[i]!);
    acks.push(r.ackedAtMs[i]! - r.sentAtMs[i]!);
  }
  acks.sort((a, b) => a - b);
  return { ok, createPerSec: (r.sentAtMs.length / (last - first)) * 1000, ackP50Ms: percentile(acks, 50), ackP99Ms: percentile(acks, 99), firstSentMs: first };
}

async function platformPhase(spec: Extract<PhaseSpec, { kind: 'platform' }>): Promise<PhaseResult> {
  const st = await storeFor(spec.store);
  try {
    const config = loadConfig({
      AGENT_PLATFORM_DATA_DIR: st.dataDir,
      AGENT_PLATFORM_DATABASE_URL: st.url,
      AGENT_PLATFORM_ADMIN_TOKEN: TOKEN,
      AGENT_PLATFORM_PORT: '0',
      AGENT_PLATFORM_LOG_LEVEL: 'silent',
      AGENT_PLATFORM_RATE_LIMIT_RPS: '0',
      AGENT_PLATFORM_RECONCILE_CONCURRENCY: String(spec.reconcileConcurrency),
      AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'simulated', count: spec.nodes, shape: { cpu: '16', memory: '64Gi' } }]),
      ...spec.env,
    });
    const platform = await buildPlatform(config);
    const runningAt = new Map<string, number>();
    const off = platform.bus.subscribe((e) => {
      if (e.objectKind === 'Agent' && e.reason === 'PhaseChanged' && (e.data as { to?: string } | undefined)?.to === 'Running' && !runningAt.has(e.objectId)) {
        runningAt.set(e.objectId, epochMs());
      }
    });
    try {
      const address = await platform.start();
      const idleRss = process.memoryUsage().rss / 1024 / 1024;
      const memory = new MemorySampler(100);
      const startedMs = Date.now();
      // Progress on stderr, so a slow run shows where it is.
      const progress = setInterval(() => {
        const m = process.memoryUsage();
        console.error(`  ${((Date.now() - startedMs) / 1000).toFixed(0)} s: ${runningAt.size} Running, queue ${platform.bus.depth()}, rss ${(m.rss / 1048576).toFixed(0)} MiB, heap ${(m.heapUsed / 1048576).toFixed(0)} MiB`);
      }, 5_000);
      progress.unref();
      const load =
        spec.transport === 'http'
          ? await forkLoad({ baseUrl: address, path: '/api/v1/agents', token: TOKEN, count: spec.agents, concurrency: spec.concurrency, bodyTemplate: { ...BODY_TEMPLATE }, namePrefix: 'agent' })
          : await injectLoad(
              (body) =>
                platform.app.inject({ method: 'POST', url: '/api/v1/agents', payload: body, headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` } }),
              spec.agents,
              spec.concurrency,
            );
      const acks = ackFigures(load);
      // Every acknowledged agent Running, or no progress for 60 s.
      let lastProgress = Date.now();
      let seen = runningAt.size;
      while (runningAt.size < acks.ok && Date.now() - lastProgress < 60_000) {
        await sleep(20);
        if (runningAt.size !== seen) {
          seen = runningAt.size;
          lastProgress = Date.now();
        }
      }
      const peaks = memory.stop();
      clearInterval(progress);
      if (process.env.BENCH_HEAP_SNAPSHOT) (await import('node:v8')).writeHeapSnapshot(process.env.BENCH_HEAP_SNAPSHOT);
      const toRunning: number[] = [];
      let lastRunning = 0;
      load.ids.forEach((id, i) => {
        const at = id ? runningAt.get(id) : undefined;
        if (at === undefined) return;
        toRunning.push(at - load.sentAtMs[i]!);
        lastRunning = Math.max(lastRunning, at);
      });
      toRunning.sort((a, b) => a - b);
      const e2eMs = lastRunning - acks.firstSentMs;
      return {
        label: `platform, ${spec.transport === 'http' ? 'HTTP' : 'app.inject'}`,
        store: spec.store,
        agents: spec.agents,
        ok: acks.ok,
        createPerSec: acks.createPerSec,
        ackP50Ms: acks.ackP50Ms,
        ackP99Ms: acks.ackP99Ms,
        running: toRunning.length,
        e2ePerSec: (toRunning.length / e2eMs) * 1000,
        e2eSeconds: e2eMs / 1000,
        runP50Ms: percentile(toRunning, 50),
        runP99Ms: percentile(toRunning, 99),
        peakRssMiB: peaks.peakRssMiB,
        peakHeapUsedMiB: peaks.peakHeapUsedMiB,
        idleRssMiB: idleRss,
        failures: load.failures,
      };
    } finally {
      off();
      await platform.close();
    }
  } finally {
    await st.cleanup();
  }
}

async function storeInsertsPhase(spec: Extract<PhaseSpec, { kind: 'store-inserts' }>): Promise<PhaseResult> {
  const st = await storeFor(spec.store);
  try {
    const store = await openStore(st.url, st.dataDir);
    try {
      // The agents exactly as the API path builds them (same validation and defaults).
      const bus = new MemoryBus();
      const service = new AgentService(store, bus, systemClock, new EventRecorder(store, bus, systemClock), { cpu: '100m', memory: '128Mi' });
      const idleRss = process.memoryUsage().rss / 1024 / 1024;
      const memory = new MemorySampler(100);
      const sentAtMs = new Array<number>(spec.agents).fill(0);
      const ackedAtMs = new Array<number>(spec.agents).fill(0);
      const ids = new Array<string>(spec.agents).fill('');
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < spec.agents) {
          const i = next++;
          sentAtMs[i] = epochMs();
          const req = CreateAgentRequest.parse({ ...BODY_TEMPLATE, name: `agent-${i}` });
          const now = systemClock.now();
          const { agent } = await store.createAgent({
            id: newAgentId(),
            tenantId: 'default',
            name: req.name,
            labels: {},
            spec: service.toSpec(req),
            desired: 'running',
            status: { phase: 'Pending', reason: 'Created', message: 'waiting to be scheduled', restarts: 0, phaseSince: now },
            createdAt: now,
          });
          ackedAtMs[i] = epochMs();
          ids[i] = agent.id;
        }
      };
      await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.agents) }, worker));
      const peaks = memory.stop();
      const acks = ackFigures({ type: 'result', sentAtMs, ackedAtMs, ids, failures: {} });
      return { label: 'baseline: store.createAgent only', store: spec.store, agents: spec.agents, ok: acks.ok, createPerSec: acks.createPerSec, ackP50Ms: acks.ackP50Ms, ackP99Ms: acks.ackP99Ms, ...peaks, idleRssMiB: idleRss, failures: {} };
    } finally {
      await store.close();
    }
  } finally {
    await st.cleanup();
  }
}

async function bareFastifyPhase(spec: Extract<PhaseSpec, { kind: 'bare-fastify' }>): Promise<PhaseResult> {
  const app = Fastify({ logger: false });
  let n = 0;
  app.post('/api/v1/agents', async (request, reply) => {
    void reply.status(201);
    return { id: `bare${n++}`, name: (request.body as { name?: string }).name };
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const idleRss = process.memoryUsage().rss / 1024 / 1024;
    const memory = new MemorySampler(100);
    const load = await forkLoad({ baseUrl: address, path: '/api/v1/agents', token: TOKEN, count: spec.agents, concurrency: spec.concurrency, bodyTemplate: { ...BODY_TEMPLATE }, namePrefix: 'agent' });
    const peaks = memory.stop();
    const acks = ackFigures(load);
    return { label: 'baseline: bare Fastify, HTTP', store: '-', agents: spec.agents, ok: acks.ok, createPerSec: acks.createPerSec, ackP50Ms: acks.ackP50Ms, ackP99Ms: acks.ackP99Ms, ...peaks, idleRssMiB: idleRss, failures: load.failures };
  } finally {
    await app.close();
  }
}

async function runPhaseHere(spec: PhaseSpec): Promise<PhaseResult> {
  switch (spec.kind) {
    case 'platform':
      return platformPhase(spec);
    case 'store-inserts':
      return storeInsertsPhase(spec);
    case 'bare-fastify':
      return bareFastifyPhase(spec);
  }
}

/** Runs one phase in a fresh process (this file with --phase). */
function runPhase(spec: PhaseSpec, opts: Pick<Options, 'cpuProfDir' | 'heapMiB' | 'semiSpaceMiB'>): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const execArgv = [...process.execArgv];
    if (opts.cpuProfDir && spec.kind === 'platform') execArgv.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`);
    // A heap cap makes V8 collect sooner: peak RSS then shows the live set, not garbage.
    if (opts.heapMiB !== undefined && spec.kind === 'platform') execArgv.push(`--max-old-space-size=${opts.heapMiB}`);
    if (opts.semiSpaceMiB !== undefined && spec.kind === 'platform') execArgv.push(`--max-semi-space-size=${opts.semiSpaceMiB}`);
    const child = fork(SELF, ['--phase', JSON.stringify(spec)], { execArgv, stdio: 'inherit' });
    let result: PhaseResult | undefined;
    child.on('message', (m: PhaseResult) => {
      result = m;
    });
    child.on('error', reject);
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`phase ${spec.kind} exited with code ${code} and no result`))));
  });
}

// ---------------------------------------------------------------------------------------
// Report

const rate = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '-' : Math.round(n).toLocaleString('en-US'));
const ms = (n: number | undefined): string => (n === undefined ? '-' : formatMs(n));

function report(opts: Options, results: PhaseResult[], command: string): string {
  const rows = results.map((r) => [
    r.label,
    r.store,
    `${r.ok.toLocaleString('en-US')}/${r.agents.toLocaleString('en-US')}`,
    rate(r.createPerSec),
    `${ms(r.ackP50Ms)} / ${ms(r.ackP99Ms)}`,
    r.running === undefined ? '-' : r.running.toLocaleString('en-US'),
    rate(r.e2ePerSec),
    r.runP50Ms === undefined ? '-' : `${ms(r.runP50Ms)} / ${ms(r.runP99Ms)}`,
    r.idleRssMiB.toFixed(0),
    r.peakRssMiB.toFixed(0),
    r.peakHeapUsedMiB.toFixed(0),
  ]);
  const table = markdownTable(
    ['what', 'store', 'created', 'creates/s', 'ack p50 / p99 ms', 'Running', 'agents/s to Running', 'create->Running p50 / p99 ms', 'idle RSS MiB', 'peak RSS MiB', 'peak heap MiB'],
    rows,
    new Set([2, 3, 4, 5, 6, 7, 8, 9, 10]),
  );
  const failures = results.flatMap((r) => Object.entries(r.failures).map(([status, f]) => `- ${r.label} (${r.store}): ${f.count} x HTTP ${status}: ${f.firstBody}`));
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return [
    `### Simulated cluster: ${opts.agents.toLocaleString('en-US')} agents onto ${opts.nodes.toLocaleString('en-US')} simulated nodes`,
    '',
    `\`${command}\``,
    '',
    `${cpus().length} x ${cpu}, Node ${process.version}; ${opts.concurrency} requests in flight, reconcile concurrency ${opts.reconcileConcurrency}; agents cpu 10m / memory 16Mi; nodes 16 CPU / 64Gi (simulated); platform heap ${opts.heapMiB === undefined ? "Node's default" : `--max-old-space-size=${opts.heapMiB}`}${opts.semiSpaceMiB === undefined ? '' : ` --max-semi-space-size=${opts.semiSpaceMiB}`}${Object.keys(opts.env).length ? `; platform config ${Object.entries(opts.env).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}.`,
    '',
    table,
    ...(failures.length ? ['', 'Failed requests:', ...failures] : []),
    '',
    'Targets (issue 3): at least 5,000 agents/s on SQLite to Running; peak RSS under 300 MB.',
  ].join('\n');
}

async function main(): Promise<void> {
  const phaseIndex = process.argv.indexOf('--phase');
  if (phaseIndex >= 0) {
    const spec = JSON.parse(process.argv[phaseIndex + 1]!) as PhaseSpec;
    const result = await runPhaseHere(spec);
    // process.exit in the send callback: a leftover handle must not keep the phase alive
    // (and --cpu-prof writes its profile on a normal exit).
    process.send!(result, () => process.exit(0));
    return;
  }
  const opts = parseArgs(process.argv.slice(2));
  const command = `npx tsx bench/simulated-cluster.ts ${process.argv.slice(2).join(' ')}`.trim();
  const results: PhaseResult[] = [];
  const run = async (spec: PhaseSpec): Promise<void> => {
    const t0 = Date.now();
    console.error(`running ${JSON.stringify(spec)} ...`);
    const r = await runPhase(spec, opts);
    console.error(`  done in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${rate(r.createPerSec)} creates/s${r.e2ePerSec !== undefined ? `, ${rate(r.e2ePerSec)} agents/s to Running` : ''}, peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
    results.push(r);
  };
  for (const store of opts.stores) {
    for (const transport of opts.transports) {
      await run({ kind: 'platform', store, transport, agents: opts.agents, nodes: opts.nodes, concurrency: opts.concurrency, reconcileConcurrency: opts.reconcileConcurrency, env: opts.env });
    }
    await run({ kind: 'store-inserts', store, agents: opts.agents, concurrency: opts.concurrency });
  }
  if (opts.transports.includes('http')) await run({ kind: 'bare-fastify', agents: opts.agents, concurrency: opts.concurrency });
  console.log(report(opts, results, command));
}

await main();
