import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { AGENT_ID_LABEL } from '../../src/runtime/runtime.js';
import { run as agentctl } from '../../src/cli/agentctl.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { isCI, requireDocker } from '../helpers/require-docker.js';
import { canStartDockerd, DockerdNode } from './dockerd-node.js';

/**
 * The node pool on real Docker: three extra dockerd daemons on this machine, each a node
 * with equal capacity (2 CPUs, 4Gi by config, so spread and pack are deterministic).
 * Spread, pack, a node crash (SIGKILL of its dockerd) with rescheduling and exact
 * accounting, the node coming back with its stale containers swept, and a drain through
 * agentctl. Steps build on each other, so the tests run in order.
 */

const hasDocker = await requireDocker();
const canStart = canStartDockerd();
if (isCI && hasDocker && !canStart) throw new Error('CI=true but this process cannot start dockerd daemons (needs root and a dockerd binary)');
const enabled = hasDocker && canStart;

const HEARTBEAT_MS = 500;
const GRACE_MS = 3_000;
const NODE_IDS = ['nd-1', 'nd-2', 'nd-3'];

interface AgentJson {
  id: string;
  name: string;
  status: { phase: string; reason?: string; node?: string; containerId?: string };
  spec: { resources: { cpuMillicores: number; memoryMiB: number } };
}
interface NodeJson {
  id: string;
  ready: boolean;
  cordoned: boolean;
  conditions: { type: string; status: string; reason: string }[];
  allocated: { cpuMillicores: number; memoryMiB: number; agents: number };
  allocatable: { cpuMillicores: number };
  agents: number;
}

describe.skipIf(!enabled).sequential('multi-node scheduling on three real dockerd daemons', () => {
  const daemons: DockerdNode[] = [];
  let platform: Platform;
  let baseUrl = '';
  let dataDir = '';
  const token = `mn_${randomBytes(16).toString('hex')}`;
  let image = '';
  const spreadIds: string[] = [];
  const packIds: string[] = [];
  let victim: { agentId: string; node: string; containerId: string } | undefined;

  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : undefined) as T };
  };
  const agent = async (id: string): Promise<AgentJson> => (await api<AgentJson>('GET', `/api/v1/agents/${id}`)).json;
  const nodes = async (): Promise<NodeJson[]> => (await api<{ items: NodeJson[] }>('GET', '/api/v1/nodes')).json.items;
  const daemonOf = (nodeId: string): DockerdNode => daemons[NODE_IDS.indexOf(nodeId)]!;
  const create = async (name: string, schedulingPolicy: string): Promise<AgentJson> => {
    const res = await api<AgentJson>('POST', '/api/v1/agents', {
      name,
      image,
      command: ['sh', '-c', 'sleep 300'],
      restartPolicy: 'Always',
      schedulingPolicy,
      resources: { cpu: '500m', memory: '64Mi' },
      labels: { test: schedulingPolicy },
    });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    return res.json;
  };
  const waitFor = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      const value = await probe().catch((err: unknown) => ((last = err), undefined));
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const waitRunning = (ids: string[], timeoutMs = 30_000): Promise<AgentJson[]> =>
    waitFor(
      `agents ${ids.join(', ')} Running`,
      async () => {
        const all = await Promise.all(ids.map(agent));
        return all.every((a) => a.status.phase === 'Running' && a.status.node) ? all : undefined;
      },
      timeoutMs,
    );
  /** Live agents' requests, summed per node, must equal what GET /nodes reports: nothing counted twice or lost. */
  const expectExactAccounting = async (): Promise<void> => {
    const list = (await api<{ items: AgentJson[] }>('GET', '/api/v1/agents?phase=Pending,Starting,Running')).json.items;
    const expected = new Map<string, { cpu: number; agents: number }>(NODE_IDS.map((id) => [id, { cpu: 0, agents: 0 }]));
    for (const a of list) {
      if (!a.status.node) continue;
      const e = expected.get(a.status.node)!;
      e.cpu += a.spec.resources.cpuMillicores;
      e.agents += 1;
    }
    const reported = await nodes();
    expect(Object.fromEntries(reported.map((n) => [n.id, { cpu: n.allocated.cpuMillicores, agents: n.allocated.agents }]))).toEqual(Object.fromEntries(expected));
  };
  const cli = async (...args: string[]): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const code = await agentctl(['--server', baseUrl, '--token', token, ...args], {
      stdout: { write: (c) => ((out += String(c)), true) },
      stderr: { write: (c) => ((err += String(c)), true) },
      env: {},
    });
    return { code, out, err };
  };

  beforeAll(async () => {
    image = await ensureBusyboxImage();
    for (let i = 0; i < NODE_IDS.length; i++) daemons.push(await DockerdNode.start([image]));
    dataDir = await mkdtemp(join(tmpdir(), 'ap-multinode-'));
    const config = loadConfig({
      AGENT_PLATFORM_PORT: '0',
      AGENT_PLATFORM_LOG_LEVEL: 'silent',
      AGENT_PLATFORM_DATA_DIR: dataDir,
      AGENT_PLATFORM_ADMIN_TOKEN: token,
      AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
      AGENT_PLATFORM_STOP_GRACE_MS: '500',
      AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      AGENT_PLATFORM_NODE_GRACE_MS: String(GRACE_MS),
      AGENT_PLATFORM_SCHEDULER_SAMPLING: 'false',
      AGENT_PLATFORM_NODES: JSON.stringify(
        NODE_IDS.map((id, i) => ({ id, driver: 'docker', dockerHost: daemons[i]!.dockerHost, labels: { zone: `z${i + 1}` }, capacity: { cpu: '2', memory: '4Gi' } })),
      ),
    });
    platform = await buildPlatform(config);
    baseUrl = (await platform.start()).replace('[::1]', '127.0.0.1');
  }, 180_000);

  afterAll(async () => {
    await platform?.close().catch(() => undefined);
    await Promise.all(daemons.map((d) => d.destroy()));
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 120_000);

  it('lists three Ready nodes with the configured capacity and nothing allocated', async () => {
    const list = await nodes();
    expect(list.map((n) => n.id)).toEqual(NODE_IDS);
    for (const n of list) {
      expect(n.conditions[0]).toMatchObject({ type: 'Ready', status: 'True' });
      expect(n.allocatable.cpuMillicores).toBe(2000);
      expect(n.allocated.agents).toBe(0);
    }
  });

  it('spread puts three agents on three nodes, each container on its own daemon', async () => {
    for (let i = 0; i < 3; i++) spreadIds.push((await create(`spread-${i}`, 'spread')).id);
    const running = await waitRunning(spreadIds);
    expect(new Set(running.map((a) => a.status.node))).toEqual(new Set(NODE_IDS));
    for (const a of running) {
      const onDaemon = await daemonOf(a.status.node!).containers();
      expect(onDaemon.map((c) => c.Labels[AGENT_ID_LABEL])).toContain(a.id);
    }
    const events = (await api<{ items: { reason: string; message: string; data?: { candidates: string[] } }[] }>('GET', `/api/v1/agents/${spreadIds[0]}/events`)).json.items;
    const scheduled = events.find((e) => e.reason === 'Scheduled');
    expect(scheduled?.message).toMatch(/^assigned to node nd-[123] \(spread, score /);
    expect(scheduled?.data?.candidates).toHaveLength(3);
    await expectExactAccounting();
  });

  it('pack fills one node first', async () => {
    for (let i = 0; i < 3; i++) packIds.push((await create(`pack-${i}`, 'pack')).id);
    const running = await waitRunning(packIds);
    // All nodes hold 500m after spreading; pack (MostAllocated) keeps choosing the fullest
    // node, ties going to the lowest id: nd-1 until it is full (4 x 500m = 2 CPUs).
    expect(running.map((a) => a.status.node)).toEqual(['nd-1', 'nd-1', 'nd-1']);
    expect((await nodes()).find((n) => n.id === 'nd-1')?.allocated.cpuMillicores).toBe(2000);
    await expectExactAccounting();
  });

  it('a killed dockerd: node NotReady within grace + interval, its Always agent Running elsewhere within 30 s, no double counting', async () => {
    const onNd2 = (await Promise.all(spreadIds.map(agent))).find((x) => x.status.node === 'nd-2')!;
    victim = { agentId: onNd2.id, node: 'nd-2', containerId: onNd2.status.containerId! };
    const killedAt = Date.now();
    await daemonOf('nd-2').kill();

    const notReadyAfterMs = await waitFor(
      'nd-2 NotReady',
      async () => ((await nodes()).find((n) => n.id === 'nd-2')?.conditions[0]?.status === 'False' ? Date.now() - killedAt : undefined),
      GRACE_MS + HEARTBEAT_MS + 5_000,
    );
    expect(notReadyAfterMs).toBeLessThanOrEqual(GRACE_MS + HEARTBEAT_MS + 2_500);
    const [moved] = await waitRunning([victim.agentId], 30_000);
    expect(Date.now() - killedAt).toBeLessThan(30_000 + GRACE_MS);
    // nd-1 is full, so the only room left is nd-3.
    expect(moved!.status.node).toBe('nd-3');
    const list = await nodes();
    expect(list.find((n) => n.id === 'nd-2')).toMatchObject({ ready: false, allocated: { cpuMillicores: 0, agents: 0 } });
    expect(list.reduce((sum, n) => sum + n.allocated.agents, 0)).toBe(6);
    await expectExactAccounting();

    const agentEvents = (await api<{ items: { reason: string }[] }>('GET', `/api/v1/agents/${victim.agentId}/events`)).json.items.map((e) => e.reason);
    expect(agentEvents).toContain('NodeLost');
    expect(agentEvents.filter((r) => r === 'Scheduled')).toHaveLength(2);
    const nodeEvents = (await api<{ items: { reason: string; type: string }[] }>('GET', '/api/v1/events?node=nd-2')).json.items;
    expect(nodeEvents.map((e) => `${e.type}/${e.reason}`)).toContain('Warning/NodeNotReady');

    const got = await cli('get', 'nodes');
    expect(got.code).toBe(0);
    expect(got.out).toMatch(/^nd-2\s+NotReady\s+docker/m);
  }, 60_000);

  it('the dockerd comes back: node Ready again and the stale container is removed by the orphan sweep', async () => {
    await daemonOf('nd-2').restart();
    await waitFor('nd-2 Ready', async () => ((await nodes()).find((n) => n.id === 'nd-2')?.ready ? true : undefined), GRACE_MS + 10_000);
    await waitFor(
      `stale container of ${victim!.agentId} removed from nd-2`,
      async () => {
        const left = await daemonOf('nd-2').containers();
        return left.some((c) => c.Labels[AGENT_ID_LABEL] === victim!.agentId) ? undefined : true;
      },
      20_000,
    );
    expect((await agent(victim!.agentId)).status).toMatchObject({ phase: 'Running', node: 'nd-3' });
    const nodeEvents = (await api<{ items: { reason: string }[] }>('GET', '/api/v1/events?node=nd-2')).json.items.map((e) => e.reason);
    expect(nodeEvents.slice(-1)).toEqual(['NodeReady']);
    await expectExactAccounting();
  }, 40_000);

  it('agentctl drain moves the agents of nd-1 to the other nodes and removes their containers; describe shows it cordoned', async () => {
    const moved = (await Promise.all([...spreadIds, ...packIds].map(agent))).filter((a) => a.status.node === 'nd-1').map((a) => a.id);
    expect(moved).toHaveLength(4);
    const drained = await cli('drain', 'nd-1');
    expect(drained.err).toBe('');
    expect(drained.out).toBe('node/nd-1 drained: 4 agent(s) moved, 0 left to finish\n');
    const running = await waitRunning([...spreadIds, ...packIds], 30_000);
    for (const a of running) expect(a.status.node).not.toBe('nd-1');
    // Docker lists a container whose removal is still under way ("Removal In Progress"), so wait for it to go.
    await waitFor(
      'drained containers removed from nd-1',
      async () => {
        const left = (await daemonOf('nd-1').containers()).filter((c) => moved.includes(c.Labels[AGENT_ID_LABEL] ?? ''));
        return left.length === 0 ? true : undefined;
      },
      20_000,
    );
    await expectExactAccounting();
    const described = await cli('describe', 'node', 'nd-1');
    expect(described.code).toBe(0);
    expect(described.out).toMatch(/^Status:\s+Ready,SchedulingDisabled$/m);
    expect(described.out).toMatch(/^Agents \(0\):$/m);
    const un = await cli('uncordon', 'nd-1');
    expect(un.out).toBe('node/nd-1 uncordoned\n');
    expect((await nodes()).find((n) => n.id === 'nd-1')?.cordoned).toBe(false);
  }, 80_000);
});
