import { ConflictError, InputError, NotFoundError } from '../domain/errors.js';
import type { Node, NodeAllocation, Taint } from '../domain/node.js';
import type { CompiledNodeSelector } from './filters/node-affinity.js';
import { nodeAffinityFilter } from './filters/node-affinity.js';
import { compareGpuIds, pickGpuIds } from './filters/gpu.js';
import type { ScheduleDecision } from './decision.js';
import type { SchedulingRequest, SchedulingSnapshot } from './scheduling-snapshot.js';

/** Node flag bits kept in NodePool.flags. */
export const NODE_FLAGS = {
  /** Not ready, unhealthy or cordoned: fails before any other filter. */
  blocked: 1,
  /** Has a NoSchedule or NoExecute taint: the taint filter must run. */
  hardTaints: 2,
  /** Has a PreferNoSchedule taint: the taint score must run. */
  preferTaints: 4,
} as const;

/** The values of one topology label over the pool. */
export interface TopologyDomains {
  /** Domain index per node index; -1 when the node lacks the label. */
  domainOf: Int32Array;
  /** Label value per domain index. */
  names: string[];
}

interface Assumption {
  nodeIndex: number;
  cpuMillicores: number;
  memoryMiB: number;
  gpuIds: readonly string[];
  spreadGroup: string;
}

const MAX_ELIGIBLE_CACHE_ENTRIES = 4096;
/** Shared by every assumption without GPUs (nearly all): 100,000 empty arrays are 3 MiB. */
const NO_GPUS: readonly string[] = Object.freeze([]);
/** Devices and used devices of every node without GPUs (see the constructor); never changed. */
const NO_GPU_LIST: readonly string[] = Object.freeze([]);
const NO_GPU_SET = new Set<string>();

/**
 * In-memory accounting of a SchedulingSnapshot, the scheduler's "assume cache": after a
 * decision the caller assumes the agent onto its node right away, so the next decision sees
 * the resources as taken even before the binding is stored. All free values are precomputed
 * in typed arrays so a decision reads numbers instead of walking Node objects.
 *
 * Nodes are held sorted by id (code-unit order): index order is id order, which the
 * scheduler's tie-break relies on. The pool never does I/O and never changes the Node
 * objects it was built from.
 */
export class NodePool {
  readonly size: number;
  /** Read-only views for the Scheduler. Index i is the i-th node by id. */
  readonly ids: readonly string[];
  readonly nodes: readonly Node[];
  /** capacity - reserved, floored at 0. */
  readonly allocatableCpu: Float64Array;
  readonly allocatableMemory: Float64Array;
  /** Snapshot allocation plus assumed agents. */
  readonly usedCpu: Float64Array;
  readonly usedMemory: Float64Array;
  readonly agentCount: Int32Array;
  readonly maxAgents: Int32Array;
  readonly freeGpuCount: Int32Array;
  /** NODE_FLAGS bits per node. */
  readonly flags: Uint8Array;
  /** True when some node has a PreferNoSchedule taint (otherwise the taint score is constant and skipped). */
  readonly anyPreferTaints: boolean;
  /**
   * Every distinct taint (key, value, effect) in the pool, once. Nodes refer to them by index,
   * so a decision evaluates each distinct taint against the tolerations once, not once per node.
   */
  readonly distinctTaints: readonly Taint[];
  /** Per node: indexes into distinctTaints of its NoSchedule/NoExecute taints. */
  readonly hardTaintIds: readonly (readonly number[])[];
  /** Per node: indexes into distinctTaints of its PreferNoSchedule taints. */
  readonly preferTaintIds: readonly (readonly number[])[];

  private readonly indexById = new Map<string, number>();
  private readonly gpuIdsSorted: (readonly string[])[];
  private readonly gpuUsed: Set<string>[];
  private readonly assumed = new Map<string, Assumption>();
  private readonly groupCounts = new Map<string, Int32Array>();
  private readonly domainsByKey = new Map<string, TopologyDomains>();
  /** group -> topology key -> agents of the group per domain; kept up to date by assume/release. */
  private readonly domainCounts = new Map<string, Map<string, Int32Array>>();
  private readonly eligibleCache = new Map<string, Uint8Array>();

  private constructor(nodes: Node[], agentCountsByNode: SchedulingSnapshot['agentCountsByNode']) {
    const n = nodes.length;
    this.size = n;
    this.nodes = nodes;
    this.ids = nodes.map((node) => node.id);
    this.allocatableCpu = new Float64Array(n);
    this.allocatableMemory = new Float64Array(n);
    this.usedCpu = new Float64Array(n);
    this.usedMemory = new Float64Array(n);
    this.agentCount = new Int32Array(n);
    this.maxAgents = new Int32Array(n);
    this.freeGpuCount = new Int32Array(n);
    this.flags = new Uint8Array(n);
    this.gpuIdsSorted = new Array<readonly string[]>(n);
    this.gpuUsed = new Array<Set<string>>(n);
    let anyPreferTaints = false;
    const distinctTaints: Taint[] = [];
    const taintIndex = new Map<string, number>();
    const internTaint = (taint: Taint): number => {
      const key = JSON.stringify([taint.key, taint.value ?? '', taint.effect]);
      let id = taintIndex.get(key);
      if (id === undefined) {
        id = distinctTaints.length;
        distinctTaints.push(taint);
        taintIndex.set(key, id);
      }
      return id;
    };
    const hardTaintIds: number[][] = new Array<number[]>(n);
    const preferTaintIds: number[][] = new Array<number[]>(n);
    const none: number[] = [];
    for (let i = 0; i < n; i++) {
      const node = nodes[i] as Node;
      if (this.indexById.has(node.id)) throw new InputError(`snapshot has node "${node.id}" twice`, { nodeId: node.id });
      this.indexById.set(node.id, i);
      this.allocatableCpu[i] = Math.max(0, node.capacity.cpuMillicores - node.reserved.cpuMillicores);
      this.allocatableMemory[i] = Math.max(0, node.capacity.memoryMiB - node.reserved.memoryMiB);
      this.usedCpu[i] = node.allocated.cpuMillicores;
      this.usedMemory[i] = node.allocated.memoryMiB;
      this.agentCount[i] = node.allocated.agents;
      this.maxAgents[i] = node.capacity.maxAgents;
      // Nodes without GPUs (nearly all) share one empty list and one empty set: nothing adds
      // to their set, since assume() refuses device ids a node does not have.
      const gpuless = node.capacity.gpus.length === 0 && node.allocated.gpuIds.length === 0;
      const ids = gpuless ? NO_GPU_LIST : node.capacity.gpus.map((gpu) => gpu.id).sort(compareGpuIds);
      const used = gpuless ? NO_GPU_SET : new Set(node.allocated.gpuIds);
      this.gpuIdsSorted[i] = ids;
      this.gpuUsed[i] = used;
      this.freeGpuCount[i] = ids.filter((id) => !used.has(id)).length;
      let flags = 0;
      if (!node.ready || node.unhealthy || node.cordoned) flags |= NODE_FLAGS.blocked;
      hardTaintIds[i] = none;
      preferTaintIds[i] = none;
      for (const taint of node.taints) {
        const prefer = taint.effect === 'PreferNoSchedule';
        flags |= prefer ? NODE_FLAGS.preferTaints : NODE_FLAGS.hardTaints;
        const ids = prefer ? preferTaintIds : hardTaintIds;
        if (ids[i] === none) ids[i] = [];
        ids[i]!.push(internTaint(taint));
      }
      if (flags & NODE_FLAGS.preferTaints) anyPreferTaints = true;
      this.flags[i] = flags;
    }
    this.anyPreferTaints = anyPreferTaints;
    this.distinctTaints = distinctTaints;
    this.hardTaintIds = hardTaintIds;
    this.preferTaintIds = preferTaintIds;
    for (const [group, byNode] of Object.entries(agentCountsByNode ?? {})) {
      const counts = this.countsOf(group);
      for (const [nodeId, count] of Object.entries(byNode)) {
        const index = this.indexById.get(nodeId);
        if (index !== undefined) counts[index] = count;
      }
    }
  }

  /** Build a pool; O(n log n). Throws InputError on duplicate node ids. */
  static fromSnapshot(snapshot: SchedulingSnapshot): NodePool {
    const nodes = [...snapshot.nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return new NodePool(nodes, snapshot.agentCountsByNode);
  }

  /** Index of a node, -1 when the pool does not hold it. */
  indexOf(nodeId: string): number {
    return this.indexById.get(nodeId) ?? -1;
  }

  isAssumed(agentId: string): boolean {
    return this.assumed.has(agentId);
  }

  /**
   * Count an agent onto a node: its cpu, memory, one agent slot, its GPU devices and one
   * member of its spread group. Checks everything before changing anything, so a failed
   * assume leaves the pool as it was.
   * @throws NotFoundError NODE_NOT_FOUND when the pool has no such node
   * @throws ConflictError AGENT_ALREADY_ASSUMED when the agent is already counted somewhere
   * @throws ConflictError NODE_OVERCOMMITTED when cpu, memory or agent slots would exceed allocatable
   * @throws ConflictError GPU_UNAVAILABLE when a device is unknown to the node, already in use or listed twice
   * @throws InputError when the number of gpuIds differs from resources.gpu
   */
  assume(
    nodeId: string,
    agentId: string,
    resources: { readonly cpuMillicores: number; readonly memoryMiB: number; readonly gpu?: number | undefined },
    gpuIds: readonly string[] = [],
    spreadGroup = '',
  ): void {
    const i = this.indexById.get(nodeId);
    if (i === undefined) throw new NotFoundError('NODE_NOT_FOUND', `node "${nodeId}" is not in the scheduling pool`, { nodeId, agentId });
    if (this.assumed.has(agentId)) {
      throw new ConflictError('AGENT_ALREADY_ASSUMED', `agent "${agentId}" is already assumed on a node; release it first`, { agentId, nodeId });
    }
    const { cpuMillicores, memoryMiB } = resources;
    if ((resources.gpu ?? 0) !== gpuIds.length) {
      throw new InputError(`agent "${agentId}" requests ${resources.gpu ?? 0} GPUs but ${gpuIds.length} device ids were given`, { agentId, nodeId });
    }
    const overcommit =
      this.agentCount[i]! + 1 > this.maxAgents[i]!
        ? 'agent slots'
        : cpuMillicores > 0 && this.usedCpu[i]! + cpuMillicores > this.allocatableCpu[i]!
          ? 'cpu'
          : memoryMiB > 0 && this.usedMemory[i]! + memoryMiB > this.allocatableMemory[i]!
            ? 'memory'
            : undefined;
    if (overcommit !== undefined) {
      throw new ConflictError('NODE_OVERCOMMITTED', `assuming agent "${agentId}" on node "${nodeId}" would over-commit ${overcommit}`, {
        agentId,
        nodeId,
        resource: overcommit,
      });
    }
    const used = this.gpuUsed[i]!;
    if (gpuIds.length > 0) {
      const known = this.gpuIdsSorted[i]!;
      const seen = new Set<string>();
      for (const id of gpuIds) {
        if (!known.includes(id) || used.has(id) || seen.has(id)) {
          throw new ConflictError('GPU_UNAVAILABLE', `GPU "${id}" on node "${nodeId}" is unknown, in use or listed twice`, { agentId, nodeId, gpuId: id });
        }
        seen.add(id);
      }
    }
    this.usedCpu[i]! += cpuMillicores;
    this.usedMemory[i]! += memoryMiB;
    this.agentCount[i]! += 1;
    for (const id of gpuIds) used.add(id);
    this.freeGpuCount[i]! -= gpuIds.length;
    this.addToGroup(spreadGroup, i, 1);
    this.assumed.set(agentId, { nodeIndex: i, cpuMillicores, memoryMiB, gpuIds: gpuIds.length === 0 ? NO_GPUS : [...gpuIds], spreadGroup });
  }

  /** Assume a scheduled decision for its request. Throws InputError for an unschedulable decision. */
  applyDecision(request: SchedulingRequest, decision: ScheduleDecision): void {
    if (decision.unschedulable) throw new InputError(`agent "${request.id}" has no node to assume: ${decision.message}`, { agentId: request.id });
    this.assume(decision.nodeId, request.id, request.spec.resources, decision.gpuIds, request.spreadGroup ?? '');
  }

  /** Give back what assume took. False when the agent was not assumed (resources from the snapshot itself cannot be released). */
  release(agentId: string): boolean {
    const a = this.assumed.get(agentId);
    if (a === undefined) return false;
    const i = a.nodeIndex;
    this.usedCpu[i]! -= a.cpuMillicores;
    this.usedMemory[i]! -= a.memoryMiB;
    this.agentCount[i]! -= 1;
    const used = this.gpuUsed[i]!;
    for (const id of a.gpuIds) used.delete(id);
    this.freeGpuCount[i]! += a.gpuIds.length;
    this.addToGroup(a.spreadGroup, i, -1);
    this.assumed.delete(agentId);
    return true;
  }

  /** Node id an agent is assumed on, or undefined. */
  assumedNodeOf(agentId: string): string | undefined {
    const a = this.assumed.get(agentId);
    return a === undefined ? undefined : this.ids[a.nodeIndex];
  }

  /** Current allocation of a node (snapshot + assumed), as a fresh object. */
  allocationOf(nodeId: string): NodeAllocation {
    const i = this.requireIndex(nodeId);
    return {
      cpuMillicores: this.usedCpu[i]!,
      memoryMiB: this.usedMemory[i]!,
      agents: this.agentCount[i]!,
      gpuIds: [...this.gpuUsed[i]!].sort(compareGpuIds),
    };
  }

  /** The lowest `count` free GPU ids of the node at index i (fewer when not enough are free). */
  pickGpuIds(i: number, count: number): string[] {
    return count <= 0 ? [] : pickGpuIds(this.gpuIdsSorted[i]!, this.gpuUsed[i]!, count);
  }

  /** Agents of a spread group on the node at index i. */
  spreadCountAt(group: string, i: number): number {
    return this.groupCounts.get(group)?.[i] ?? 0;
  }

  /** Domains of one topology label; computed once per key and cached (labels never change in a pool). */
  topologyDomains(topologyKey: string): TopologyDomains {
    let domains = this.domainsByKey.get(topologyKey);
    if (domains === undefined) {
      const domainOf = new Int32Array(this.size);
      const names: string[] = [];
      const byName = new Map<string, number>();
      for (let i = 0; i < this.size; i++) {
        const value = this.nodes[i]!.labels[topologyKey];
        if (value === undefined) {
          domainOf[i] = -1;
          continue;
        }
        let d = byName.get(value);
        if (d === undefined) {
          d = names.length;
          names.push(value);
          byName.set(value, d);
        }
        domainOf[i] = d;
      }
      domains = { domainOf, names };
      this.domainsByKey.set(topologyKey, domains);
    }
    return domains;
  }

  /** Agents of a spread group per domain of a topology label; kept current by assume and release. */
  spreadDomainCounts(group: string, topologyKey: string): Int32Array {
    let byKey = this.domainCounts.get(group);
    if (byKey === undefined) {
      byKey = new Map();
      this.domainCounts.set(group, byKey);
    }
    let counts = byKey.get(topologyKey);
    if (counts === undefined) {
      const { domainOf, names } = this.topologyDomains(topologyKey);
      counts = new Int32Array(names.length);
      const perNode = this.groupCounts.get(group);
      if (perNode !== undefined) {
        for (let i = 0; i < this.size; i++) {
          const d = domainOf[i]!;
          if (d >= 0) counts[d]! += perNode[i]!;
        }
      }
      byKey.set(topologyKey, counts);
    }
    return counts;
  }

  /**
   * Which domains of a topology label count for an agent's spread: those holding at least one
   * node that passes the agent's node selector and required affinity (Kubernetes ignores
   * taints and readiness here). Cached per (key, `selectorSignature`); the caller must give
   * the same signature only for equal selectors.
   */
  eligibleDomains(topologyKey: string, selectorSignature: string, selector: CompiledNodeSelector): Uint8Array {
    const cacheKey = `${topologyKey}\u0000${selectorSignature}`;
    let eligible = this.eligibleCache.get(cacheKey);
    if (eligible === undefined) {
      const { domainOf, names } = this.topologyDomains(topologyKey);
      eligible = new Uint8Array(names.length);
      for (let i = 0; i < this.size; i++) {
        const d = domainOf[i]!;
        if (d >= 0 && eligible[d] === 0 && nodeAffinityFilter(this.nodes[i]!.labels, selector) === null) eligible[d] = 1;
      }
      // Bounded: selectors come from users, and a long-lived pool must not grow without end.
      if (this.eligibleCache.size >= MAX_ELIGIBLE_CACHE_ENTRIES) this.eligibleCache.clear();
      this.eligibleCache.set(cacheKey, eligible);
    }
    return eligible;
  }

  private requireIndex(nodeId: string): number {
    const i = this.indexById.get(nodeId);
    if (i === undefined) throw new NotFoundError('NODE_NOT_FOUND', `node "${nodeId}" is not in the scheduling pool`, { nodeId });
    return i;
  }

  private countsOf(group: string): Int32Array {
    let counts = this.groupCounts.get(group);
    if (counts === undefined) {
      counts = new Int32Array(this.size);
      this.groupCounts.set(group, counts);
    }
    return counts;
  }

  private addToGroup(group: string, i: number, delta: number): void {
    this.countsOf(group)[i]! += delta;
    const byKey = this.domainCounts.get(group);
    if (byKey === undefined) return;
    for (const [key, counts] of byKey) {
      const d = this.domainsByKey.get(key)!.domainOf[i]!;
      if (d >= 0) counts[d]! += delta;
    }
  }
}
