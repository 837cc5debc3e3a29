/**
 * The controller alone: N agents created through AgentService (no HTTP) before the platform
 * starts, then the time until all are Running on `--nodes` simulated nodes (scheduling, the
 * two status writes with their events, simulated create and start). Baseline of the same
 * run: the same two status writes for N other agents straight through the Store port, 256 in
 * flight (what the controller cannot beat). Optionally stays idle afterwards and reports the
 * CPU the platform spends with N agents Running (resync, usage sampler, meter, heartbeats).
 *
 *   npx tsx bench/controller-only.ts [--agents 20000] [--nodes 5000] [--idle-s 0]
 *
 * SQLite in a temp dir, log level silent. See docs/benchmarks.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config.js';
import { buildPlatform } from '../src/platform.js';
import { CreateAgentRequest } from '../src/api/schemas/agent-schema.js';
import type { Agent } from '../src/domain/agent.js';
import { markdownTable } from './lib/markdown-table.js';
import { numericArg } from './lib/numeric-arg.js';

const AGENTS = numericArg('agents', 20_000);
const NODES = numericArg('nodes', 5_000);
const IDLE_S = numericArg('idle-s', 0);
const WIDTH = 256;

const dir = await mkdtemp(join(tmpdir(), 'ap-controller-only-'));
const config = loadConfig({
  AGENT_PLATFORM_DATA_DIR: dir,
  AGENT_PLATFORM_ADMIN_TOKEN: 'bench-controller-only-token',
  AGENT_PLATFORM_PORT: '0',
  AGENT_PLATFORM_LOG_LEVEL: 'silent',
  AGENT_PLATFORM_RATE_LIMIT_RPS: '0',
  // Every agent is created before the controller starts: create backpressure would hold each
  // wave past 1,024 queued keys for its full wait (10 s), which measures nothing.
  AGENT_PLATFORM_CREATE_BACKLOG_LIMIT: '0',
  AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'simulated', count: NODES, shape: { cpu: '16', memory: '64Gi' } }]),
});
const platform = await buildPlatform(config);
try {
  const principal = { subject: 'bench', tenantId: 'default', role: 'platform-admin' as const };
  const create = async (prefix: string): Promise<Agent[]> => {
    const out: Agent[] = [];
    for (let i = 0; i < AGENTS; i += WIDTH) {
      const wave = Array.from({ length: Math.min(WIDTH, AGENTS - i) }, (_, k) =>
        platform.agents.create(principal, CreateAgentRequest.parse({ name: `${prefix}-${i + k}`, image: 'agent-platform/sim:latest', resources: { cpu: '10m', memory: '16Mi' } })),
      );
      for (const r of await Promise.all(wave)) out.push(r.agent);
    }
    return out;
  };
  await create('a');
  let running = 0;
  platform.bus.subscribe((e) => {
    if (e.reason === 'PhaseChanged' && (e.data as { to?: string } | undefined)?.to === 'Running') running++;
  });
  const startedMs = performance.now();
  await platform.start();
  while (running < AGENTS) await new Promise((resolve) => setTimeout(resolve, 5));
  const controllerMs = performance.now() - startedMs;

  let idle = '';
  if (IDLE_S > 0) {
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, IDLE_S * 1000));
    const cpu = process.cpuUsage(cpu0);
    const m = process.memoryUsage();
    idle = `Idle ${IDLE_S} s with ${AGENTS.toLocaleString('en-US')} agents Running: ${(((cpu.user + cpu.system) / 1000 / (performance.now() - wall0)) * 100).toFixed(0)}% of a core, RSS ${(m.rss / 1048576).toFixed(0)} MiB, heap ${(m.heapUsed / 1048576).toFixed(0)} MiB.`;
  }

  // Baseline: the controller's two writes per agent, nothing else, on agents of their own
  // (created Pending through the same service; the controller keeps away from them because
  // it is stopped first).
  await platform.controller.stop();
  const others = await create('b');
  const now = Date.now();
  const baseStartedMs = performance.now();
  const placed: Agent[] = [];
  for (let i = 0; i < others.length; i += WIDTH) {
    const wave = others.slice(i, i + WIDTH).map(async (a) => {
      const event = { tenantId: a.tenantId, objectKind: 'Agent' as const, objectId: a.id, type: 'Normal' as const, reason: 'Scheduled', message: 'scheduled', time: now };
      placed.push((await platform.store.updateAgentWithEvents(a, { status: { ...a.status, phase: 'Starting', node: 'sim-00001', phaseSince: now }, updatedAt: now }, [event])).agent);
    });
    await Promise.all(wave);
  }
  for (let i = 0; i < placed.length; i += WIDTH) {
    await Promise.all(
      placed.slice(i, i + WIDTH).map((a) =>
        platform.store.updateAgentWithEvents(a, { status: { ...a.status, phase: 'Running', containerId: 'c'.repeat(64), startedAt: now, phaseSince: now }, updatedAt: now }, [
          { tenantId: a.tenantId, objectKind: 'Agent', objectId: a.id, type: 'Normal', reason: 'Started', message: 'started', time: now },
        ]),
      ),
    );
  }
  const baseMs = performance.now() - baseStartedMs;

  const row = (what: string, ms: number): string[] => [what, (AGENTS / (ms / 1000)).toFixed(0), ((ms * 1000) / AGENTS).toFixed(1)];
  console.log(`### Controller alone: ${AGENTS.toLocaleString('en-US')} agents onto ${NODES.toLocaleString('en-US')} simulated nodes\n`);
  console.log(`\`npx tsx bench/controller-only.ts --agents ${AGENTS} --nodes ${NODES} --idle-s ${IDLE_S}\` (Node ${process.version})\n`);
  console.log(markdownTable(['what', 'agents/s', 'µs per agent'], [row('controller: Pending -> Running', controllerMs), row('baseline: the two status writes through the Store', baseMs)], new Set([1, 2])));
  if (idle) console.log(`\n${idle}`);
} finally {
  await platform.close();
  await rm(dir, { recursive: true, force: true });
}
process.exit(0);
