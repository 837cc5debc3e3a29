/**
 * Measured node usage (`usage` on GET /api/v1/nodes and /nodes/{id}, `agentctl top nodes`)
 * against the real platform: buildPlatform in-process with the local dockerd as node "local"
 * (scoped to this platform's agents, so other test files' containers do not count), the
 * usage sampler reading the containers' cgroups, and busybox agents that spin a CPU or
 * hold memory in their tmpfs. Then the same on simulated nodes, which have no containers
 * to measure: the measured columns read <unknown> and nothing crashes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/agentctl.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { EventsPlatform, sleep, uniqueName } from './events-platform.js';

const hasDocker = await requireDocker();
const MiB = 1024 * 1024;
const USAGE_INTERVAL_MS = 300;
/** What the memory-holding agent writes into its /tmp tmpfs: charged to its memory cgroup, part of its working set. */
const HELD_MIB = 40;
const TOP_NODES_HEADER = ['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%', 'CPU(ALLOCATED/ALLOCATABLE)', 'MEMORY(ALLOCATED/ALLOCATABLE)', 'AGENTS'];

interface NodeUsageJson {
  cpuMillicores: number | null;
  memoryWorkingSetBytes: number;
  agents: number;
  sampledAt: string;
}
interface NodeJson {
  id: string;
  simulated: boolean;
  usage?: NodeUsageJson;
  allocatable: { cpuMillicores: number; memoryMiB: number; maxAgents: number; cpu: string; memory: string };
  allocated: { cpuMillicores: number; memoryMiB: number; agents: number; cpu: string; memory: string };
}
interface AgentUsageJson {
  cpuCores: number | null;
  memoryWorkingSetBytes: number;
  sampledAt: string;
}

/** Splits a kubectl-style table into rows of cells (columns are separated by 3+ spaces). */
const tableRows = (text: string): string[][] =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => l.split(/ {3,}/));

const pct = (used: number, total: number): string => `${Math.round((used / total) * 100)}%`;

/** agentctl in-process with another token (EventsPlatform.cli always uses the admin's). */
async function cliAs(p: EventsPlatform, token: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const sink = (to: string[]) => ({ write: (c: string | Uint8Array) => (to.push(String(c)), true), isTTY: false });
  const code = await run(args, { stdout: sink(out), stderr: sink(err), env: { HOME: '/nonexistent', AGENTCTL_SERVER: p.baseUrl, AGENTCTL_TOKEN: token } });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

/** Polls `fn` until it returns a value; the error names what was last seen. */
async function until<T>(what: string, fn: () => Promise<{ done: T | undefined; seen: unknown }>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { done, seen } = await fn();
    if (done !== undefined) return done;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last seen: ${JSON.stringify(seen)}`);
    await sleep(USAGE_INTERVAL_MS);
  }
}

describe.skipIf(!hasDocker).sequential('node usage on real Docker: API and agentctl top nodes', () => {
  let p: EventsPlatform;
  let image = '';
  /** Agents started here, with the token that may stop them. */
  const started: { id: string; token?: string }[] = [];
  const node = async (token?: string): Promise<NodeJson> => {
    const list = (await p.expect<{ items: NodeJson[] }>(200, 'GET', '/api/v1/nodes', token ? { token } : {})).json.items;
    expect(list.map((n) => n.id)).toEqual(['local']);
    return list[0]!;
  };

  beforeAll(async () => {
    image = await ensureBusyboxImage();
    p = await EventsPlatform.start({ nodes: 'docker', env: { AGENT_PLATFORM_USAGE_INTERVAL_MS: String(USAGE_INTERVAL_MS) } });
  });

  afterAll(async () => {
    await p?.close();
  });

  it('reads zero on a node without running agents, measured rather than unknown', async () => {
    const idle = await until('the first sampling round', async () => {
      const n = await node();
      return { done: n.usage, seen: n };
    });
    expect(idle).toMatchObject({ cpuMillicores: 0, memoryWorkingSetBytes: 0, agents: 0 });
    expect(Date.parse(idle.sampledAt)).toBeGreaterThan(Date.now() - 60_000);
    const res = await p.cli(['top', 'nodes']);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const [header, row] = tableRows(res.stdout);
    expect(header).toEqual(TOP_NODES_HEADER);
    expect(row!.slice(0, 5)).toEqual(['local', '0m', '0%', '0Ki', '0%']);
  });

  it("shows a busy agent's CPU and a memory-holding agent's working set in the node's usage, the API's sums of the agents' own", async () => {
    const busyName = uniqueName('busy');
    const holdName = uniqueName('hold');
    const busy = await p.create({ name: busyName, image, command: ['sh', '-c', 'while :; do :; done'], resources: { cpu: '500m', memory: '64Mi' } });
    const hold = await p.create({
      name: holdName,
      image,
      command: ['sh', '-c', `dd if=/dev/zero of=/tmp/held bs=1048576 count=${HELD_MIB} 2>/dev/null; exec sleep 600`],
      resources: { cpu: '100m', memory: '128Mi' },
    });
    started.push({ id: busy.id }, { id: hold.id });
    await p.waitForPhase(busy.id, 'Running');
    await p.waitForPhase(hold.id, 'Running');

    // Risen: both measured, the busy one's CPU rate known, the held memory in.
    const risen = await until('the node usage to rise', async () => {
      const u = (await node()).usage;
      const ok = u && u.agents === 2 && u.cpuMillicores !== null && u.cpuMillicores > 100 && u.memoryWorkingSetBytes >= (HELD_MIB - 4) * MiB;
      return { done: ok ? u : undefined, seen: u };
    });
    // A spinning shell under a 500m limit plus a sleeping one: CFS keeps it near 500m (loose: 2 shared cores).
    expect(risen.cpuMillicores).toBeLessThanOrEqual(700);
    expect(risen.memoryWorkingSetBytes).toBeLessThan((HELD_MIB + 24) * MiB);

    // The node's numbers are the sums of what GET /agents/{id} shows, when all reads fall in one sampling round.
    await until('one round read consistently', async () => {
      const before = (await node()).usage!;
      const [a, b] = await Promise.all([busy.id, hold.id].map(async (id) => (await p.expect<{ usage?: AgentUsageJson }>(200, 'GET', `/api/v1/agents/${id}`)).json.usage));
      const after = (await node()).usage!;
      const sameRound = before.sampledAt === after.sampledAt && a && b && Math.max(Date.parse(a.sampledAt), Date.parse(b.sampledAt)) === Date.parse(after.sampledAt);
      if (!sameRound || a.cpuCores === null || b.cpuCores === null) return { done: undefined, seen: { before, a, b, after } };
      expect(after.memoryWorkingSetBytes).toBe(a.memoryWorkingSetBytes + b.memoryWorkingSetBytes);
      expect(Math.abs(after.cpuMillicores! - (a.cpuCores + b.cpuCores) * 1000)).toBeLessThanOrEqual(1);
      expect(after.agents).toBe(2);
      return { done: true, seen: null };
    });

    // The detail route carries the same usage (same rule, same round when read back to back).
    const detail = (await p.expect<NodeJson & { agentList: unknown[] }>(200, 'GET', '/api/v1/nodes/local')).json;
    expect(detail.usage).toMatchObject({ agents: 2 });
    expect(detail.usage!.memoryWorkingSetBytes).toBeGreaterThanOrEqual((HELD_MIB - 4) * MiB);
    expect(detail.agentList).toHaveLength(2);

    // agentctl top nodes: measured columns beside the allocation ones.
    const { row, apiNode } = await until('top nodes to show CPU > 100m', async () => {
      const res = await p.cli(['top', 'nodes']);
      expect(res).toMatchObject({ code: 0, stderr: '' });
      const [header, ...rows] = tableRows(res.stdout);
      expect(header).toEqual(TOP_NODES_HEADER);
      expect(rows).toHaveLength(1);
      const r = rows[0]!;
      return { done: /^\d+m$/.test(r[1]!) && Number.parseInt(r[1]!, 10) > 100 ? { row: r, apiNode: await node() } : undefined, seen: res.stdout };
    });
    const cpuMilli = Number.parseInt(row[1]!, 10);
    expect(cpuMilli).toBeLessThanOrEqual(700);
    expect(row[2]).toBe(pct(cpuMilli, apiNode.allocatable.cpuMillicores));
    expect(row[3]).toMatch(/^\d+Mi$/);
    const memMiB = Number.parseInt(row[3]!, 10);
    expect(memMiB).toBeGreaterThanOrEqual(HELD_MIB - 4);
    expect(memMiB).toBeLessThan(HELD_MIB + 24);
    expect(row[4]).toBe(pct(memMiB, apiNode.allocatable.memoryMiB));
    expect(row.slice(5)).toEqual([
      `${apiNode.allocated.cpu}/${apiNode.allocatable.cpu} (${pct(600, apiNode.allocatable.cpuMillicores)})`,
      `${apiNode.allocated.memory}/${apiNode.allocatable.memory} (${pct(192, apiNode.allocatable.memoryMiB)})`,
      `2/${apiNode.allocatable.maxAgents}`,
    ]);
    const json = JSON.parse((await p.cli(['top', 'nodes', '-o', 'json'])).stdout) as { items: { name: string; usage: NodeUsageJson | null }[] };
    expect(json.items).toHaveLength(1);
    expect(json.items[0]!.name).toBe('local');
    expect(json.items[0]!.usage).toMatchObject({ agents: 2, cpuMillicores: expect.any(Number) });
    expect(json.items[0]!.usage!.memoryWorkingSetBytes).toBeGreaterThanOrEqual((HELD_MIB - 4) * MiB);
  });

  it("sums only the caller's own tenant's agents for a non-admin, on the list, the detail and in agentctl", async () => {
    const tenant = uniqueName('tn');
    await p.expect(201, 'POST', '/api/v1/tenants', { body: { id: tenant } });
    const key = (await p.expect<{ key: string }>(201, 'POST', `/api/v1/tenants/${tenant}/keys`, { body: { name: 'member-key', role: 'member' } })).json.key;

    // No agents of its own on "local": zero, although the admin's agents run there.
    const own0 = (await node(key)).usage;
    expect(own0).toMatchObject({ cpuMillicores: 0, memoryWorkingSetBytes: 0, agents: 0 });
    expect((await p.expect<NodeJson>(200, 'GET', '/api/v1/nodes/local', { token: key })).json.usage).toMatchObject({ agents: 0, memoryWorkingSetBytes: 0 });
    const cli0 = await cliAs(p, key, ['top', 'nodes']);
    expect(cli0.code).toBe(0);
    const row0 = tableRows(cli0.stdout)[1]!;
    expect(row0.slice(0, 5)).toEqual(['local', '0m', '0%', '0Ki', '0%']);
    // Allocation stays node-wide: the admin's two agents are counted there.
    expect(row0[7]).toMatch(/^2\//);

    // One small agent of its own: its usage only, not the 40 MiB the admin's agent holds.
    const mine = await p.expect<{ id: string }>(201, 'POST', '/api/v1/agents', { token: key, body: { name: uniqueName('mine'), image, command: ['sh', '-c', 'exec sleep 600'], resources: { cpu: '100m', memory: '32Mi' } } });
    p.agentIds.add(mine.json.id);
    started.push({ id: mine.json.id, token: key });
    const ownUsage = await until("the tenant's agent to be measured", async () => {
      const u = (await node(key)).usage;
      return { done: u && u.agents === 1 && u.cpuMillicores !== null ? u : undefined, seen: u };
    });
    expect(ownUsage.memoryWorkingSetBytes).toBeGreaterThan(0);
    expect(ownUsage.memoryWorkingSetBytes).toBeLessThan(16 * MiB);
    expect(ownUsage.cpuMillicores).toBeLessThan(100);
    const detail = (await p.expect<NodeJson & { agentList: { tenantId: string }[] }>(200, 'GET', '/api/v1/nodes/local', { token: key })).json;
    expect(detail.agentList.map((a) => a.tenantId)).toEqual([tenant]);
    expect(detail.usage).toMatchObject({ agents: 1 });
    expect(detail.usage!.memoryWorkingSetBytes).toBeLessThan(16 * MiB);
    // The admin sees all three.
    const all = await until('the admin to see all three agents measured', async () => {
      const u = (await node()).usage;
      return { done: u?.agents === 3 ? u : undefined, seen: u };
    });
    expect(all.memoryWorkingSetBytes).toBeGreaterThanOrEqual((HELD_MIB - 4) * MiB);
  });

  it('falls back to zero once the agents stop', async () => {
    expect(started).toHaveLength(3);
    await Promise.all(started.map((a) => p.expect(200, 'POST', `/api/v1/agents/${a.id}/stop`, a.token ? { token: a.token } : {})));
    await Promise.all(started.filter((a) => !a.token).map((a) => p.waitForPhase(a.id, 'Stopped')));
    const u = await until('the node usage to fall back', async () => {
      const n = await node();
      return { done: n.usage?.agents === 0 ? n.usage : undefined, seen: n.usage };
    });
    expect(u).toMatchObject({ cpuMillicores: 0, memoryWorkingSetBytes: 0 });
    expect(tableRows((await p.cli(['top', 'nodes'])).stdout)[1]!.slice(0, 5)).toEqual(['local', '0m', '0%', '0Ki', '0%']);
  });
});

describe.sequential('node usage on simulated nodes: not measured, shown as <unknown>', () => {
  let p: EventsPlatform;

  beforeAll(async () => {
    p = await EventsPlatform.start({ nodes: 'simulated', simulatedNodes: 2, env: { AGENT_PLATFORM_USAGE_INTERVAL_MS: String(USAGE_INTERVAL_MS) } });
  });

  afterAll(async () => {
    await p?.close();
  });

  it('omits usage from the API and prints <unknown> in the measured columns, with the allocation', async () => {
    const a = await p.create({ name: uniqueName('sim'), image: 'sim/sleep', command: ['sleep', 'infinity'], resources: { cpu: '500m', memory: '256Mi' } });
    const running = await p.waitForPhase(a.id, 'Running');
    // Several sampling rounds after the agent runs: usage stays absent, not zero.
    const rounds = p.platform.usage.completedRounds;
    await until('three more sampling rounds', async () => ({ done: p.platform.usage.completedRounds >= rounds + 3 ? true : undefined, seen: p.platform.usage.completedRounds }));
    const nodes = (await p.expect<{ items: NodeJson[] }>(200, 'GET', '/api/v1/nodes')).json.items;
    expect(nodes).toHaveLength(2);
    for (const n of nodes) {
      expect(n.simulated).toBe(true);
      expect(n).not.toHaveProperty('usage');
    }
    expect((await p.expect<NodeJson>(200, 'GET', `/api/v1/nodes/${running.status.node}`)).json).not.toHaveProperty('usage');

    const res = await p.cli(['top', 'nodes']);
    expect(res.code).toBe(0);
    expect(res.stderr).toContain('<unknown>: not measured');
    const [header, ...rows] = tableRows(res.stdout);
    expect(header).toEqual(TOP_NODES_HEADER);
    expect(rows.map((r) => r[0]).sort()).toEqual(nodes.map((n) => n.id).sort());
    for (const r of rows) {
      const n = nodes.find((x) => x.id === r[0])!;
      expect(r.slice(1, 5)).toEqual(['<unknown>', '<unknown>', '<unknown>', '<unknown>']);
      expect(r.slice(5)).toEqual([
        `${n.allocated.cpu}/${n.allocatable.cpu} (${pct(n.allocated.cpuMillicores, n.allocatable.cpuMillicores)})`,
        `${n.allocated.memory}/${n.allocatable.memory} (${pct(n.allocated.memoryMiB, n.allocatable.memoryMiB)})`,
        `${n.allocated.agents}/${n.allocatable.maxAgents}`,
      ]);
    }
    expect(nodes.find((n) => n.id === running.status.node)!.allocated).toMatchObject({ cpuMillicores: 500, memoryMiB: 256, agents: 1 });
    const json = JSON.parse((await p.cli(['top', 'nodes', '-o', 'json'])).stdout) as { items: { usage: unknown }[] };
    expect(json.items.map((i) => i.usage)).toEqual([null, null]);
  });

  it('documents usage in OpenAPI as the NodeUsage schema on Node', async () => {
    const doc = (await p.expect<Record<string, any>>(200, 'GET', '/openapi.json')).json;
    const schemas = doc.components.schemas;
    expect(Object.keys(schemas.NodeUsage.properties).sort()).toEqual(['agents', 'cpuMillicores', 'memoryWorkingSetBytes', 'sampledAt']);
    expect(schemas.NodeUsage.required.sort()).toEqual(['agents', 'cpuMillicores', 'memoryWorkingSetBytes', 'sampledAt']);
    expect(JSON.stringify(schemas.Node.properties.usage)).toContain('#/components/schemas/NodeUsage');
    expect(schemas.Node.required).not.toContain('usage');
  });
});
