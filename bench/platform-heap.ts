/**
 * Live heap per simulated node and per running agent, after forced GCs.
 *
 *   node --expose-gc --import tsx bench/platform-heap.ts [nodes=5000] [agents=20000] [snapshot-file]
 *
 * Builds the platform (SQLite in a temp dir, log level silent) with `nodes` simulated nodes
 * (16 CPU, 64Gi), measures heapUsed once they are Ready, creates `agents` agents through
 * app.inject (128 in flight), waits until every one is Running plus a usage-sampler round,
 * and measures again. Prints bytes per node and per agent, and peak RSS (sampled every
 * 100 ms). A third argument writes a heap snapshot at the end (v8.writeHeapSnapshot).
 * Unlike bench/simulated-cluster.ts this is about what stays, not how fast it gets there.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeHeapSnapshot } from 'node:v8';
import { loadConfig } from '../src/config.js';
import { buildPlatform } from '../src/platform.js';

const nodes = Number(process.argv[2] ?? 5000);
const agents = Number(process.argv[3] ?? 20000);
const snapshotFile = process.argv[4];
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc --import tsx bench/platform-heap.ts');
const TOKEN = 'bench-platform-heap-token';
const MiB = 1024 * 1024;

/** heapUsed after a few full GCs, in MiB. */
async function liveHeapMiB(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc!();
    await sleep(50);
  }
  return process.memoryUsage().heapUsed / MiB;
}

const baseMiB = await liveHeapMiB();
const dataDir = await mkdtemp(join(tmpdir(), 'ap-heapbench-'));
const platform = await buildPlatform(
  loadConfig({
    AGENT_PLATFORM_DATA_DIR: dataDir,
    AGENT_PLATFORM_ADMIN_TOKEN: TOKEN,
    AGENT_PLATFORM_PORT: '0',
    AGENT_PLATFORM_LOG_LEVEL: 'silent',
    AGENT_PLATFORM_RATE_LIMIT_RPS: '0',
    AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'simulated', count: nodes, shape: { cpu: '16', memory: '64Gi' } }]),
  }),
);
try {
  await platform.start();
  await sleep(3_000); // a heartbeat round or so
  const idleMiB = await liveHeapMiB();
  console.log(
    `${nodes} nodes: live heap ${baseMiB.toFixed(1)} MiB before the platform, ${idleMiB.toFixed(1)} MiB idle -> ${Math.round(((idleMiB - baseMiB) * MiB) / nodes)} B/node; RSS ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB`,
  );
  let running = 0;
  const off = platform.bus.subscribe((e) => {
    if (e.reason === 'PhaseChanged' && (e.data as { to?: string } | undefined)?.to === 'Running') running++;
  });
  let peakRss = 0;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  let next = 0;
  await Promise.all(
    Array.from({ length: 128 }, async () => {
      while (next < agents) {
        const i = next++;
        const res = await platform.app.inject({
          method: 'POST',
          url: '/api/v1/agents',
          payload: JSON.stringify({ name: `agent-${i}`, image: 'agent-platform/sim:latest', resources: { cpu: '10m', memory: '16Mi' } }),
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
        });
        if (res.statusCode !== 201) throw new Error(`POST answered ${res.statusCode}: ${res.body}`);
      }
    }),
  );
  while (running < agents) await sleep(100);
  await sleep(12_000); // one usage-sampler round (10 s) with every agent Running
  clearInterval(rssTimer);
  off();
  const fullMiB = await liveHeapMiB();
  console.log(
    `${agents} agents Running: live heap ${fullMiB.toFixed(1)} MiB -> ${Math.round(((fullMiB - idleMiB) * MiB) / agents)} B/agent; peak RSS ${(peakRss / MiB).toFixed(0)} MiB`,
  );
  if (snapshotFile) writeHeapSnapshot(snapshotFile);
} finally {
  await platform.close();
  await rm(dataDir, { recursive: true, force: true });
}
