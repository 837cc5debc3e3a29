/**
 * The store's share of an agent's life on SQLite: create (with quota admission and its
 * event), then the controller's two status writes (Starting on a node, Running), each with
 * its event, through the Store port with `--concurrency` writes in flight (group commit),
 * against the same statements on the bare better-sqlite3 driver in transactions of
 * `--batch` agents, on the same schema, measured in the same run.
 *
 *   npx tsx bench/store-lifecycle.ts [--agents 20000] [--concurrency 256] [--batch 256]
 *
 * The bare run is the floor the platform's store cannot beat; the gap is what the store's
 * JavaScript (Kysely, group commit, row mapping) costs. See docs/benchmarks.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Agent, AgentSpec, AgentStatus } from '../src/domain/agent.js';
import { newAgentId } from '../src/services/agent-service.js';
import { openSqliteStore } from '../src/store/sqlite-store.js';
import type { NewAgent } from '../src/store/store.js';
import { markdownTable } from './lib/markdown-table.js';
import { numericArg } from './lib/numeric-arg.js';

const AGENTS = numericArg('agents', 20_000);
const CONCURRENCY = numericArg('concurrency', 256);
const BATCH = numericArg('batch', 256);

const SPEC: AgentSpec = {
  image: 'agent-platform/sim:latest',
  command: [],
  args: [],
  env: {},
  resources: { cpuMillicores: 10, memoryMiB: 16, gpu: 0, cpuLimitMillicores: 10, memoryLimitMiB: 16 },
  restartPolicy: 'Never',
  schedulingPolicy: 'balanced',
  priority: 0,
  nodeSelector: {},
  tolerations: [],
};

function newAgent(i: number, now: number): NewAgent {
  return {
    id: newAgentId(),
    tenantId: 'default',
    name: `agent-${i}`,
    labels: {},
    spec: SPEC,
    desired: 'running',
    status: { phase: 'Pending', reason: 'Created', message: 'waiting to be scheduled', restarts: 0, phaseSince: now },
    createdAt: now,
  };
}

const starting = (a: Agent, now: number): AgentStatus => ({ ...a.status, phase: 'Starting', reason: 'ContainerCreating', message: `creating container on node sim-${a.name.length % 5000}`, node: `sim-${a.name.length % 5000}`, phaseSince: now });
const running = (a: Agent, now: number): AgentStatus => ({ ...a.status, phase: 'Running', reason: 'Started', message: `running on node ${a.status.node}`, containerId: 'c'.repeat(64), startedAt: now, phaseSince: now });
const event = (a: { id: string }, reason: string, data?: unknown) => ({ tenantId: 'default', objectKind: 'Agent' as const, objectId: a.id, type: 'Normal' as const, reason, message: `${reason} ${a.id}`, data, time: Date.now() });

async function inWaves<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

async function throughStore(dir: string): Promise<number> {
  const store = openSqliteStore(join(dir, 'store.db'));
  await store.migrate();
  const now = Date.now();
  const startedMs = performance.now();
  const agents: Agent[] = [];
  await inWaves(
    Array.from({ length: AGENTS }, (_, i) => i),
    CONCURRENCY,
    async (i) => {
      const input = newAgent(i, now);
      agents.push((await store.createAgent(input, undefined, [event(input, 'Created')])).agent);
    },
  );
  const placed: Agent[] = [];
  await inWaves(agents, CONCURRENCY, async (a) => {
    placed.push((await store.updateAgentWithEvents(a, { status: starting(a, now), updatedAt: now }, [event(a, 'Scheduled', { candidates: ['sim-1 187.5', 'sim-2 187.4'] })])).agent);
  });
  await inWaves(placed, CONCURRENCY, (a) => store.updateAgentWithEvents(a, { status: running(a, now), updatedAt: now }, [event(a, 'Started')]));
  const ms = performance.now() - startedMs;
  await store.close();
  return ms;
}

async function bareDriver(dir: string): Promise<number> {
  const file = join(dir, 'bare.db');
  const schema = openSqliteStore(file);
  await schema.migrate();
  await schema.close();
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('cache_size = -32768');
  const insertAgent = db.prepare(
    'insert into agents (id, tenant_id, name, labels, spec, desired, phase, node, status, created_at, updated_at, version, holds_quota, accrued_until) values (?, ?, ?, ?, ?, ?, ?, null, ?, ?, ?, 1, 1, null)',
  );
  const readQuota = db.prepare('select * from tenant_quotas where tenant_id = ?');
  const addUsed = db.prepare('update tenant_quotas set used_cpu = used_cpu + ?, used_memory = used_memory + ?, used_agents = used_agents + 1, used_running = used_running + 1 where tenant_id = ?');
  const insertEvent = db.prepare('insert into events (tenant_id, object_kind, object_id, type, reason, message, data, time) values (?, ?, ?, ?, ?, ?, ?, ?) returning id');
  const readBooks = db.prepare('select version, holds_quota, accrued_until from agents where id = ?');
  const cas = db.prepare('update agents set updated_at = ?, status = ?, phase = ?, node = ?, holds_quota = ?, accrued_until = ?, version = version + 1 where id = ? and version = ?');
  const now = Date.now();
  const specJson = JSON.stringify(SPEC);
  const startedMs = performance.now();
  const agents = Array.from({ length: AGENTS }, (_, i) => newAgent(i, now));
  const batches = (fn: (a: NewAgent) => void): void => {
    for (let i = 0; i < agents.length; i += BATCH) db.transaction(() => agents.slice(i, i + BATCH).forEach(fn))();
  };
  batches((a) => {
    readQuota.get('default');
    addUsed.run(10, 16, 'default');
    insertAgent.run(a.id, a.tenantId, a.name, '{}', specJson, 'running', 'Pending', JSON.stringify(a.status), now, now);
    const e = event(a, 'Created');
    insertEvent.get(e.tenantId, e.objectKind, e.objectId, e.type, e.reason, e.message, null, e.time);
  });
  for (const [phase, version, reason] of [['Starting', 1, 'Scheduled'], ['Running', 2, 'Started']] as const) {
    batches((a) => {
      readBooks.get(a.id);
      const status = JSON.stringify({ ...a.status, phase, node: 'sim-1', phaseSince: now });
      cas.run(now, status, phase, 'sim-1', 1, phase === 'Running' ? now : null, a.id, version);
      const e = event(a, reason);
      insertEvent.get(e.tenantId, e.objectKind, e.objectId, e.type, e.reason, e.message, null, e.time);
    });
  }
  const ms = performance.now() - startedMs;
  db.close();
  return ms;
}

const dir = await mkdtemp(join(tmpdir(), 'ap-store-lifecycle-'));
try {
  const store = await throughStore(dir);
  const bare = await bareDriver(dir);
  const row = (what: string, ms: number): string[] => [what, (AGENTS / (ms / 1000)).toFixed(0), ((ms * 1000) / AGENTS).toFixed(1)];
  console.log(`### Store lifecycle writes: ${AGENTS.toLocaleString('en-US')} agents on SQLite\n`);
  console.log(`\`npx tsx bench/store-lifecycle.ts --agents ${AGENTS} --concurrency ${CONCURRENCY} --batch ${BATCH}\` (Node ${process.version})\n`);
  console.log(
    markdownTable(
      ['path', 'agents/s (create + 2 transitions, 3 events)', 'µs per agent'],
      [row(`Store port (group commit, ${CONCURRENCY} in flight)`, store), row(`baseline: bare better-sqlite3, ${BATCH} agents per transaction`, bare)],
      new Set([1, 2]),
    ),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
