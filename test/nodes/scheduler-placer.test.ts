import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Agent, AgentSpec, AgentStatus, RestartPolicy } from '../../src/domain/agent.js';
import { ManualClock } from '../../src/domain/clock.js';
import { silentLogger } from '../../src/domain/logger.js';
import type { Taint } from '../../src/domain/node.js';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { EventRecorder } from '../../src/controllers/event-recorder.js';
import { RuntimeRegistry } from '../../src/runtime/runtime-registry.js';
import { SimulatedCluster } from '../../src/runtime/simulated/simulated-cluster.js';
import { gpuDevicesOf, type NodeShape } from '../../src/runtime/simulated/node-shape.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { NodeEvictor } from '../../src/nodes/node-evictor.js';
import { NodePoolService, type NodeDefinition } from '../../src/nodes/node-pool-service.js';
import { SchedulerPlacer } from '../../src/nodes/scheduler-placer.js';

/**
 * SchedulerPlacer and NodePoolService on real parts: a SQLite store in a temp file, the
 * real Scheduler, a MemoryBus and simulated nodes (SIMULATED runtime: nothing runs).
 * Heartbeats are driven by hand (heartbeatAll) with a ManualClock, so grace periods are
 * exact and the tests do not sleep.
 */

const root = mkdtempSync(join(tmpdir(), 'ap-placer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dbSeq = 0;
let agentSeq = 0;

interface Harness {
  store: Store;
  bus: MemoryBus;
  clock: ManualClock;
  cluster: SimulatedCluster;
  nodes: NodePoolService;
  placer: SchedulerPlacer;
  queued: string[];
  close(): Promise<void>;
}

const GRACE_MS = 10_000;

async function harness(options: { nodes: number; shape: NodeShape; taints?: Taint[]; store?: Store; persistDir?: string }): Promise<Harness> {
  const store = options.store ?? openSqliteStore(join(root, `store-${++dbSeq}.db`));
  await store.migrate();
  const bus = new MemoryBus();
  const clock = new ManualClock();
  const events = new EventRecorder(store, bus, clock);
  const cluster = new SimulatedCluster({ nodes: options.nodes, shape: options.shape, idPrefix: 'n-' });
  const runtimes = new RuntimeRegistry(cluster.runtimes());
  const queued: string[] = [];
  const abort = new AbortController();
  // Record the order in which waiting agents are queued (one at a time).
  bus.consume(async (key) => void queued.push(key), 1, abort.signal);
  let placer: SchedulerPlacer | undefined;
  const definitions: NodeDefinition[] = runtimes.all().map((runtime) => ({
    id: runtime.nodeId,
    driver: runtime.driver,
    simulated: true,
    runtime,
    labels: { zone: `z${runtime.nodeId.slice(-1)}` },
    taints: options.taints ?? [],
    reserved: { cpuMillicores: 0, memoryMiB: 0 },
    maxAgents: 110,
    gpus: gpuDevicesOf(options.shape),
  }));
  const nodes = new NodePoolService({
    store,
    bus,
    clock,
    logger: silentLogger,
    events,
    evictor: new NodeEvictor({ store, bus, clock, logger: silentLogger, events, runtimes, release: (id) => placer!.release(id), stopGraceMs: 0 }),
    nodes: definitions,
    heartbeatIntervalMs: 1e9,
    graceMs: GRACE_MS,
    unhealthyFailureThreshold: 2,
    unhealthyCooldownMs: 60_000,
  });
  placer = new SchedulerPlacer({ nodes, scheduler: new Scheduler({ sampling: false }), bus });
  await nodes.start();
  return {
    store,
    bus,
    clock,
    cluster,
    nodes,
    placer,
    queued,
    async close() {
      abort.abort();
      placer!.close();
      await nodes.stop();
      await cluster.close();
      await bus.close();
      if (!options.store) await store.close();
    },
  };
}

function spec(overrides: Partial<AgentSpec> = {}, cpu = 1000, memory = 1024): AgentSpec {
  return {
    image: 'sim',
    command: ['sleep', 'infinity'],
    args: [],
    env: {},
    resources: { cpuMillicores: cpu, memoryMiB: memory, gpu: 0, cpuLimitMillicores: cpu, memoryLimitMiB: memory },
    restartPolicy: 'Always',
    schedulingPolicy: 'spread',
    priority: 0,
    nodeSelector: {},
    tolerations: [],
    ...overrides,
  };
}

async function createAgent(h: Harness, s: AgentSpec, status: Partial<AgentStatus> = {}, createdAt = h.clock.now() + ++agentSeq): Promise<Agent> {
  const { agent } = await h.store.createAgent({
    id: `agent${String(++agentSeq).padStart(6, '0')}`,
    tenantId: 't1',
    name: `a-${agentSeq}`,
    labels: { app: 'x' },
    spec: s,
    desired: 'running',
    status: { phase: 'Pending', restarts: 0, phaseSince: h.clock.now(), ...status },
    createdAt,
  });
  return agent;
}

/** Place and record the node, as the controller does. */
async function placeAndBind(h: Harness, agent: Agent): Promise<Agent> {
  const p = await h.placer.place(agent);
  if (!p.ok) throw new Error(`expected a node for ${agent.id}: ${p.message}`);
  return h.store.updateAgent(agent.id, agent.version, { status: { ...agent.status, node: p.nodeId, gpuIds: p.gpuIds.length ? p.gpuIds : undefined, phase: 'Running' }, updatedAt: h.clock.now() });
}

const sumAllocated = (h: Harness): { cpu: number; agents: number } =>
  h.nodes.nodes().reduce((acc, n) => {
    const a = h.placer.allocationOf(n.id);
    return { cpu: acc.cpu + a.cpuMillicores, agents: acc.agents + a.agents };
  }, { cpu: 0, agents: 0 });

describe('SchedulerPlacer', () => {
  let h: Harness;
  afterEach(async () => h?.close());

  it('spread puts three agents on three nodes; pack fills one node first', async () => {
    h = await harness({ nodes: 3, shape: { cpuMillicores: 4000, memoryMiB: 8192 } });
    const spread = [];
    for (let i = 0; i < 3; i++) spread.push((await h.placer.place(await createAgent(h, spec({ schedulingPolicy: 'spread' })))));
    expect(new Set(spread.map((p) => (p.ok ? p.nodeId : p.message))).size).toBe(3);
    const packed = [];
    for (let i = 0; i < 2; i++) packed.push(await h.placer.place(await createAgent(h, spec({ schedulingPolicy: 'pack' }))));
    // Every node holds 1 CPU of 4 after spreading; pack then keeps choosing the fullest one.
    expect(packed.map((p) => (p.ok ? p.nodeId : p.message))).toEqual(['n-00001', 'n-00001']);
    expect(h.placer.allocationOf('n-00001')).toEqual({ cpuMillicores: 3000, memoryMiB: 3072, agents: 3, gpuIds: [] });
  });

  it('records the decision: message with policy and score, per-node scores of the top candidates', async () => {
    h = await harness({ nodes: 3, shape: { cpuMillicores: 4000, memoryMiB: 8192 } });
    const p = await h.placer.place(await createAgent(h, spec({ schedulingPolicy: 'balanced' })));
    expect(p.ok).toBe(true);
    if (!p.ok) return;
    expect(p.message).toMatch(/^assigned to node n-0000[123] \(balanced, score [0-9.]+\)$/);
    const data = p.data as { candidates: string[]; scores: { nodeId: string; breakdown: Record<string, number> }[] };
    expect(data.scores).toHaveLength(3);
    expect(data.scores[0]!.nodeId).toBe(p.nodeId);
    expect(Object.keys(data.scores[0]!.breakdown)).toEqual(expect.arrayContaining(['LeastAllocated', 'BalancedAllocation']));
    expect(data.candidates[0]).toMatch(new RegExp(`^${p.nodeId} [0-9.]+ = LeastAllocated`));
  });

  it('never over-commits under 40 concurrent placements; the rest are Unschedulable with counted reasons', async () => {
    h = await harness({ nodes: 3, shape: { cpuMillicores: 4000, memoryMiB: 8192 } });
    const agents = await Promise.all(Array.from({ length: 40 }, () => createAgent(h, spec({}, 1000, 512))));
    const placements = await Promise.all(agents.map((a) => h.placer.place(a)));
    const ok = placements.filter((p) => p.ok);
    expect(ok).toHaveLength(12);
    for (const n of h.nodes.nodes()) expect(h.placer.allocationOf(n.id).cpuMillicores).toBe(4000);
    const refused = placements.find((p) => !p.ok);
    expect(refused).toMatchObject({ ok: false, reason: 'Unschedulable', message: '0/3 nodes are available: 3 insufficient cpu.', data: { reasons: { 'insufficient cpu': 3 } } });
    expect(h.placer.waitingCount()).toBe(28);
  });

  it('queues waiting agents when room frees: highest priority first, then the oldest; only as many as fit', async () => {
    h = await harness({ nodes: 1, shape: { cpuMillicores: 2000, memoryMiB: 8192 } });
    const running = [await placeAndBind(h, await createAgent(h, spec())), await placeAndBind(h, await createAgent(h, spec()))];
    const base = h.clock.now();
    const old = await createAgent(h, spec({ priority: 0 }), {}, base + 1);
    const young = await createAgent(h, spec({ priority: 0 }), {}, base + 2);
    const urgent = await createAgent(h, spec({ priority: 10 }), {}, base + 3);
    for (const a of [old, young, urgent]) expect((await h.placer.place(a)).ok).toBe(false);
    h.queued.length = 0;
    h.placer.release(running[0]!.id);
    await waitUntil(() => h.queued.length >= 1);
    await new Promise((r) => setTimeout(r, 50));
    // One CPU freed: exactly one waiting agent fits, and it is the urgent one.
    expect(h.queued).toEqual([urgent.id]);
    h.placer.release(running[1]!.id);
    await waitUntil(() => h.queued.length >= 3);
    await new Promise((r) => setTimeout(r, 50));
    // Nobody placed the urgent one meanwhile (this bus only records): two CPUs free now go
    // to the urgent one again and then the oldest; the youngest keeps waiting.
    expect(h.queued.slice(1)).toEqual([urgent.id, old.id]);
  });

  it('gives GPUs as whole devices, never shared, only to agents that tolerate the taint', async () => {
    const taint: Taint = { key: 'nvidia.com/gpu', value: 'true', effect: 'NoSchedule' };
    h = await harness({ nodes: 1, shape: { cpuMillicores: 16000, memoryMiB: 65536, gpus: { count: 4, model: 'A100' } }, taints: [taint] });
    const gpuSpec = (): AgentSpec => ({ ...spec({ tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] }), resources: { ...spec().resources, gpu: 2 } });
    const first = await h.placer.place(await createAgent(h, gpuSpec()));
    const second = await h.placer.place(await createAgent(h, gpuSpec()));
    const third = await h.placer.place(await createAgent(h, gpuSpec()));
    const intolerant = await h.placer.place(await createAgent(h, spec()));
    expect(first).toMatchObject({ ok: true, gpuIds: ['0', '1'] });
    expect(second).toMatchObject({ ok: true, gpuIds: ['2', '3'] });
    expect(third).toMatchObject({ ok: false, message: '0/1 nodes are available: 1 insufficient gpu.' });
    expect(intolerant).toMatchObject({ ok: false, message: '0/1 nodes are available: 1 had untolerated taint {nvidia.com/gpu: true}.' });
  });

  it('honours required node affinity and topology spread from the agent spec', async () => {
    h = await harness({ nodes: 3, shape: { cpuMillicores: 4000, memoryMiB: 8192 } });
    const affinity = { required: [{ matchExpressions: [{ key: 'zone', operator: 'In' as const, values: ['z2', 'z3'] }] }] };
    const placed = [];
    for (let i = 0; i < 4; i++) {
      placed.push(await h.placer.place(await createAgent(h, spec({ schedulingPolicy: 'pack', affinity, topologySpread: [{ maxSkew: 1, topologyKey: 'zone' }] }))));
    }
    // pack would stack them; the spread constraint alternates them over the two allowed zones.
    expect(placed.map((p) => (p.ok ? p.nodeId : p.message)).sort()).toEqual(['n-00002', 'n-00002', 'n-00003', 'n-00003']);
  });

  it('rebuilds allocation from the store after a restart: live bound agents counted, terminal ones not', async () => {
    const store = openSqliteStore(join(root, `store-${++dbSeq}.db`));
    h = await harness({ nodes: 2, shape: { cpuMillicores: 4000, memoryMiB: 8192, gpus: { count: 2, model: 'T4' } }, store });
    const gpuAgent = await createAgent(h, { ...spec(), resources: { ...spec().resources, gpu: 1 } }, { phase: 'Running', node: 'n-00001', gpuIds: ['1'] });
    await createAgent(h, spec({}, 500, 256), { phase: 'Starting', node: 'n-00002' });
    await createAgent(h, spec({}, 700, 256), { phase: 'Succeeded', node: 'n-00002' });
    await createAgent(h, spec({}, 300, 256), { phase: 'Pending' });
    expect(await h.placer.rebuild(h.store)).toBe(2);
    expect(h.placer.allocationOf('n-00001')).toEqual({ cpuMillicores: 1000, memoryMiB: 1024, agents: 1, gpuIds: ['1'] });
    expect(h.placer.allocationOf('n-00002')).toEqual({ cpuMillicores: 500, memoryMiB: 256, agents: 1, gpuIds: [] });
    // The rebuilt GPU is not given out again.
    const next = await h.placer.place(await createAgent(h, { ...spec({ nodeSelector: { zone: 'z1' } }), resources: { ...spec().resources, gpu: 1 } }));
    expect(next).toMatchObject({ ok: true, nodeId: 'n-00001', gpuIds: ['0'] });
    h.placer.release(gpuAgent.id);
    expect(h.placer.allocationOf('n-00001').gpuIds).toEqual(['0']);
    await h.close();
    await store.close();
  });
});

describe('NodePoolService with SchedulerPlacer', () => {
  let h: Harness;
  afterEach(async () => h?.close());

  async function agentsOnNode(restartPolicies: RestartPolicy[]): Promise<Agent[]> {
    const out: Agent[] = [];
    for (const restartPolicy of restartPolicies) out.push(await placeAndBind(h, await createAgent(h, spec({ restartPolicy, nodeSelector: { zone: 'z1' } }))));
    return out;
  }

  it('a node that stops answering goes NotReady after the grace period: Always agents rescheduled, Never agents fail, room released', async () => {
    h = await harness({ nodes: 2, shape: { cpuMillicores: 4000, memoryMiB: 8192 } });
    const [always, never] = await agentsOnNode(['Always', 'Never']);
    expect(h.nodes.condition('n-00001')).toMatchObject({ status: 'True', reason: 'NodeReady' });
    h.cluster.setNodeDown('n-00001', true);
    h.clock.advance(GRACE_MS - 1);
    await h.nodes.heartbeatAll();
    expect(h.nodes.node('n-00001').ready).toBe(true);
    h.clock.advance(1);
    await h.nodes.heartbeatAll();
    expect(h.nodes.condition('n-00001')).toMatchObject({ status: 'False', reason: 'HeartbeatTimeout' });

    const a = (await h.store.getAgent(always!.id))!;
    expect(a.status).toMatchObject({ phase: 'Pending', reason: 'NodeLost', message: 'node n-00001 not ready; rescheduling' });
    expect(a.status.node).toBeUndefined();
    expect(a.status.containerId).toBeUndefined();
    const n = (await h.store.getAgent(never!.id))!;
    expect(n.status).toMatchObject({ phase: 'Failed', reason: 'NodeLost', node: 'n-00001' });
    expect(h.placer.allocationOf('n-00001')).toEqual({ cpuMillicores: 0, memoryMiB: 0, agents: 0, gpuIds: [] });

    // The rescheduled agent cannot go back to the NotReady node.
    const p = await h.placer.place({ ...a, spec: { ...a.spec, nodeSelector: {} } });
    expect(p).toMatchObject({ ok: true, nodeId: 'n-00002' });
    const lost = await h.store.listEvents({ objectKind: 'Node', objectId: 'n-00001' });
    expect(lost.map((e) => `${e.type}/${e.reason}`)).toEqual(['Normal/NodeReady', 'Warning/NodeNotReady']);
    const agentEvents = await h.store.listEvents({ objectKind: 'Agent', objectId: always!.id });
    // Stored with the change itself, naming it.
    expect(agentEvents.find((e) => e.reason === 'NodeLost')).toMatchObject({ type: 'Warning', message: 'node n-00001 not ready; rescheduling', data: { from: always!.status.phase, to: 'Pending' } });

    h.cluster.setNodeDown('n-00001', false);
    await h.nodes.heartbeatAll();
    expect(h.nodes.condition('n-00001')).toMatchObject({ status: 'True', reason: 'NodeReady' });
    expect(sumAllocated(h)).toEqual({ cpu: 1000, agents: 1 });
  });

  it('cordon keeps new agents off and survives a restart of the service; uncordon clears it', async () => {
    const store = openSqliteStore(join(root, `store-${++dbSeq}.db`));
    h = await harness({ nodes: 1, shape: { cpuMillicores: 4000, memoryMiB: 8192 }, store });
    await h.nodes.cordon('n-00001', 'admin');
    expect(await h.placer.place(await createAgent(h, spec()))).toMatchObject({ ok: false, message: '0/1 nodes are available: 1 cordoned.' });
    await h.close();
    h = await harness({ nodes: 1, shape: { cpuMillicores: 4000, memoryMiB: 8192 }, store });
    expect(h.nodes.node('n-00001').cordoned).toBe(true);
    await h.nodes.uncordon('n-00001', 'admin');
    expect(await h.placer.place(await createAgent(h, spec()))).toMatchObject({ ok: true, nodeId: 'n-00001' });
    expect((await h.store.listNodeStates())[0]).toMatchObject({ id: 'n-00001', cordoned: false });
    await h.close();
    await store.close();
  });

  it('marks a node unhealthy after repeated start failures and clears the mark after the cool-down', async () => {
    h = await harness({ nodes: 1, shape: { cpuMillicores: 8000, memoryMiB: 8192 } });
    for (let i = 0; i < 2; i++) {
      const a = await placeAndBind(h, await createAgent(h, spec()));
      // A user's exit code is not the node's fault; a failed start is.
      await new EventRecorder(h.store, h.bus, h.clock).record({ tenantId: 't1', objectKind: 'Agent', objectId: a.id, type: 'Warning', reason: 'Error', message: 'exited with code 1' });
      await new EventRecorder(h.store, h.bus, h.clock).record({ tenantId: 't1', objectKind: 'Agent', objectId: a.id, type: 'Warning', reason: 'StartError', message: 'exec format error' });
    }
    await waitUntil(() => h.nodes.node('n-00001').unhealthy);
    expect(await h.placer.place(await createAgent(h, spec()))).toMatchObject({ ok: false, message: '0/1 nodes are available: 1 unhealthy.' });
    h.clock.advance(60_000);
    await h.nodes.heartbeatAll();
    expect(h.nodes.node('n-00001').unhealthy).toBe(false);
    expect((await h.store.listEvents({ objectKind: 'Node' })).map((e) => e.reason)).toEqual(['NodeReady', 'NodeUnhealthy', 'NodeHealthy']);
  });

  it('drain moves Always agents off (container removed) and leaves Never agents running', async () => {
    h = await harness({ nodes: 2, shape: { cpuMillicores: 4000, memoryMiB: 8192 } });
    const [always, never] = await agentsOnNode(['Always', 'Never']);
    const runtime = h.cluster.runtime('n-00001');
    for (const a of [always!, never!]) {
      const id = await runtime.create({ agentId: a.id, tenantId: 't1', name: a.name, image: 'sim', command: ['sleep', 'infinity'], args: [], env: {}, cpuLimitMillicores: 1000, cpuRequestMillicores: 1000, memoryLimitMiB: 1024, pidsLimit: 64, tmpSizeMiB: 8, dataSizeMiB: 8, gpuDeviceIds: [], labels: {} });
      await runtime.start(id);
    }
    const result = await h.nodes.drain('n-00001', 'admin');
    expect(result).toEqual({ rescheduled: 1, remaining: 1, errors: 0 });
    expect(h.nodes.node('n-00001').cordoned).toBe(true);
    const moved = (await h.store.getAgent(always!.id))!;
    expect(moved.status).toMatchObject({ phase: 'Pending', reason: 'Drained' });
    const drained = (await h.store.listEvents({ objectKind: 'Agent', objectId: always!.id })).filter((e) => e.reason === 'Drained');
    expect(drained).toHaveLength(1);
    expect(drained[0]!.data).toEqual({ from: always!.status.phase, to: 'Pending' });
    expect(moved.status.node).toBeUndefined();
    expect((await runtime.list()).map((c) => c.agentId)).toEqual([never!.id]);
    expect(h.placer.allocationOf('n-00001').agents).toBe(1);
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}
