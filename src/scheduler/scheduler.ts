import { InputError } from '../domain/errors.js';
import type { CandidateScore, ScheduleDecision, ScoreBreakdown, UnschedulableDecision } from './decision.js';
import { fitFilter } from './filters/fit.js';
import { gpuFilter } from './filters/gpu.js';
import type { CompiledNodeSelector } from './filters/node-affinity.js';
import { compileNodeSelector, nodeAffinityFilter } from './filters/node-affinity.js';
import { nodeReadyFilter } from './filters/node-ready.js';
import { nodeUnschedulableFilter } from './filters/node-unschedulable.js';
import { isTaintTolerated, taintTolerationFilter } from './filters/taint-toleration.js';
import { topologySpreadFilter } from './filters/topology-spread.js';
import { NODE_FLAGS, NodePool } from './node-pool.js';
import { numFeasibleNodesToFind } from './num-feasible-nodes-to-find.js';
import type { CompiledSchedulerConfig, SchedulerOptions } from './scheduler-config.js';
import { compileSchedulerConfig } from './scheduler-config.js';
import type { SchedulingRequest, SchedulingSnapshot } from './scheduling-snapshot.js';
import { balancedAllocationScore } from './scorers/balanced-allocation.js';
import { leastAllocatedScore } from './scorers/least-allocated.js';
import { mostAllocatedScore } from './scorers/most-allocated.js';
import { nodeAffinityRawScore, normalizeNodeAffinityScore } from './scorers/node-affinity-score.js';
import { isPreferNoScheduleTolerated, normalizeTaintTolerationScore } from './scorers/taint-toleration-score.js';
import { unschedulableMessage } from './unschedulable-message.js';

const UNKNOWN = -1;

/** One topology spread constraint, resolved against the pool for the current decision. */
interface PreparedSpread {
  domainOf: Int32Array;
  counts: Int32Array;
  minCount: number;
  maxSkew: number;
}

/**
 * Places one agent at a time with kube-scheduler semantics: filter plugins (NodeReady,
 * NodeUnschedulable, TaintToleration, NodeSelector/NodeAffinity, Fit, GPU, TopologySpread,
 * in that order; a node's reason is the first filter it fails), then weighted score plugins
 * (see SchedulerOptions). The highest total wins; ties go to the node whose id sorts first
 * (code-unit order), so the same input always gives the same node.
 *
 * With sampling on (the default) and a pool larger than `minFeasibleNodesToFind`, the scan
 * starts at a rotating offset and stops once numFeasibleNodesToFind() feasible nodes are
 * found: the winner is then the best of the examined nodes only (`decision.sampled`). Turn
 * sampling off for "the best node in the pool".
 *
 * Pure: no I/O and no clock. The instance holds only the config, the rotating scan offset and
 * scratch buffers reused across decisions, so it is not re-entrant (use one per worker).
 */
export class Scheduler {
  readonly config: CompiledSchedulerConfig;
  private nextStartNodeIndex = 0;
  private feasible = new Int32Array(0);
  private resourceScore = new Float64Array(0);
  private affinityRaw = new Float64Array(0);
  private taintCount = new Int32Array(0);
  private taintVerdict = new Int8Array(0);
  private preferVerdict = new Int8Array(0);
  private readonly topPos: Int32Array;
  private readonly topScore: Float64Array;
  private readonly reasonCounts = new Map<string, number>();

  constructor(options: SchedulerOptions = {}) {
    this.config = compileSchedulerConfig(options);
    this.topPos = new Int32Array(this.config.topCandidates);
    this.topScore = new Float64Array(this.config.topCandidates);
  }

  /**
   * Choose a node for `request`. Does not change the pool: call `pool.applyDecision` (or
   * `assume`) with a scheduled decision before the next call, or the next decision will not
   * see these resources as taken. A SchedulingSnapshot is turned into a throw-away NodePool.
   * @throws InputError for a scheduling policy the config does not know
   */
  schedule(request: SchedulingRequest, source: NodePool | SchedulingSnapshot): ScheduleDecision {
    const pool = source instanceof NodePool ? source : NodePool.fromSnapshot(source);
    const config = this.config;
    const n = pool.size;
    this.ensureCapacity(n);
    const spec = request.spec;
    const weights = config.policyWeights[spec.schedulingPolicy];
    if (weights === undefined) throw new InputError(`unknown scheduling policy "${String(spec.schedulingPolicy)}"`, { agentId: request.id });
    const wLeast = weights.LeastAllocated;
    const wMost = weights.MostAllocated;
    const wBalanced = weights.BalancedAllocation;
    const wAffinity = config.nodeAffinityWeight;
    const wTaint = config.taintTolerationWeight;

    const resources = spec.resources;
    const reqCpu = resources.cpuMillicores;
    const reqMemory = resources.memoryMiB;
    const reqGpu = resources.gpu;
    const tolerations = spec.tolerations ?? [];
    const selector = compileNodeSelector(spec.nodeSelector ?? {}, spec.affinity?.required);
    const preferred = spec.affinity?.preferred ?? [];
    const scoreAffinity = wAffinity > 0 && preferred.length > 0;
    const scoreTaints = wTaint > 0 && pool.anyPreferTaints;
    const spreads = this.prepareSpreads(request, pool, selector);

    const { nodes, flags, allocatableCpu, allocatableMemory, usedCpu, usedMemory, agentCount, maxAgents, freeGpuCount } = pool;
    const { distinctTaints, hardTaintIds, preferTaintIds } = pool;
    // Per distinct taint: tolerated (1), not (0), or not yet asked (UNKNOWN) for this agent.
    if (this.taintVerdict.length < distinctTaints.length) {
      this.taintVerdict = new Int8Array(distinctTaints.length);
      this.preferVerdict = new Int8Array(distinctTaints.length);
    }
    const taintVerdict = this.taintVerdict;
    const preferVerdict = this.preferVerdict;
    taintVerdict.fill(UNKNOWN, 0, distinctTaints.length);
    preferVerdict.fill(UNKNOWN, 0, distinctTaints.length);
    const feasible = this.feasible;
    const resourceScore = this.resourceScore;
    const affinityRaw = this.affinityRaw;
    const taintCount = this.taintCount;
    const toFind = config.sampling ? numFeasibleNodesToFind(n, config.percentageOfNodesToScore, config.minFeasibleNodesToFind) : n;
    const start = toFind < n ? this.nextStartNodeIndex % n : 0;
    let feasibleCount = 0;
    let examined = 0;
    let maxAffinityRaw = 0;
    let maxTaintCount = 0;

    // Hot loop: only pass/fail, cheapest checks first (typed-array reads before label and taint
    // lookups). Which filter a node failed first matters only when no node passes; diagnose()
    // then re-runs the filters in their documented order.
    scan: for (; examined < n && feasibleCount < toFind; examined++) {
      let i = start + examined;
      if (i >= n) i -= n;
      const nodeFlags = flags[i]!;
      if (nodeFlags & NODE_FLAGS.blocked) continue;
      if (fitFilter(allocatableCpu[i]! - usedCpu[i]!, allocatableMemory[i]! - usedMemory[i]!, maxAgents[i]! - agentCount[i]!, resources) !== null) continue;
      if (reqGpu > 0 && gpuFilter(freeGpuCount[i]!, reqGpu) !== null) continue;
      const node = nodes[i]!;
      if (nodeFlags & NODE_FLAGS.hardTaints) {
        for (const id of hardTaintIds[i]!) {
          let verdict = taintVerdict[id]!;
          if (verdict === UNKNOWN) taintVerdict[id] = verdict = isTaintTolerated(distinctTaints[id]!, tolerations) ? 1 : 0;
          if (verdict === 0) continue scan;
        }
      }
      if (selector.active && nodeAffinityFilter(node.labels, selector) !== null) continue;
      if (spreads !== null) {
        for (const spread of spreads) {
          const d = spread.domainOf[i]!;
          if (topologySpreadFilter(d >= 0, d >= 0 ? spread.counts[d]! : 0, spread.minCount, spread.maxSkew) !== null) continue scan;
        }
      }

      const f = feasibleCount++;
      feasible[f] = i;
      const requestedCpu = usedCpu[i]! + reqCpu;
      const requestedMemory = usedMemory[i]! + reqMemory;
      // Same summation order as the breakdown (and the naive reference), so totals are bit-identical.
      let score = 0;
      if (wLeast > 0) score += wLeast * leastAllocatedScore(requestedCpu, allocatableCpu[i]!, requestedMemory, allocatableMemory[i]!);
      if (wMost > 0) score += wMost * mostAllocatedScore(requestedCpu, allocatableCpu[i]!, requestedMemory, allocatableMemory[i]!);
      if (wBalanced > 0) score += wBalanced * balancedAllocationScore(requestedCpu, allocatableCpu[i]!, requestedMemory, allocatableMemory[i]!);
      resourceScore[f] = score;
      if (scoreAffinity) {
        const raw = nodeAffinityRawScore(node.labels, preferred);
        affinityRaw[f] = raw;
        if (raw > maxAffinityRaw) maxAffinityRaw = raw;
      }
      if (scoreTaints) {
        let count = 0;
        if (nodeFlags & NODE_FLAGS.preferTaints) {
          for (const id of preferTaintIds[i]!) {
            let verdict = preferVerdict[id]!;
            if (verdict === UNKNOWN) preferVerdict[id] = verdict = isPreferNoScheduleTolerated(distinctTaints[id]!, tolerations) ? 1 : 0;
            if (verdict === 0) count++;
          }
        }
        taintCount[f] = count;
        if (count > maxTaintCount) maxTaintCount = count;
      }
    }
    if (toFind < n) this.nextStartNodeIndex = (start + examined) % n;

    if (feasibleCount === 0) return this.diagnose(pool, request, selector, spreads);

    // Normalised plugins need the maximum over all candidates, hence the second pass; it keeps
    // only the best k (no sort of all candidates).
    const k = this.topPos.length;
    const topPos = this.topPos;
    const topScore = this.topScore;
    let topN = 0;
    for (let f = 0; f < feasibleCount; f++) {
      let score = resourceScore[f]!;
      if (wAffinity > 0) score += wAffinity * (scoreAffinity ? normalizeNodeAffinityScore(affinityRaw[f]!, maxAffinityRaw) : 0);
      if (wTaint > 0) score += wTaint * (scoreTaints ? normalizeTaintTolerationScore(taintCount[f]!, maxTaintCount) : 100);
      const i = feasible[f]!;
      if (topN === k && !(score > topScore[k - 1]! || (score === topScore[k - 1]! && i < feasible[topPos[k - 1]!]!))) continue;
      let j = topN < k ? topN++ : k - 1;
      while (j > 0 && (score > topScore[j - 1]! || (score === topScore[j - 1]! && i < feasible[topPos[j - 1]!]!))) {
        topScore[j] = topScore[j - 1]!;
        topPos[j] = topPos[j - 1]!;
        j--;
      }
      topScore[j] = score;
      topPos[j] = f;
    }

    const scores: CandidateScore[] = [];
    for (let t = 0; t < topN; t++) {
      const f = topPos[t]!;
      const i = feasible[f]!;
      const requestedCpu = usedCpu[i]! + reqCpu;
      const requestedMemory = usedMemory[i]! + reqMemory;
      const breakdown: ScoreBreakdown = {};
      if (wLeast > 0) breakdown.LeastAllocated = leastAllocatedScore(requestedCpu, allocatableCpu[i]!, requestedMemory, allocatableMemory[i]!);
      if (wMost > 0) breakdown.MostAllocated = mostAllocatedScore(requestedCpu, allocatableCpu[i]!, requestedMemory, allocatableMemory[i]!);
      if (wBalanced > 0) breakdown.BalancedAllocation = balancedAllocationScore(requestedCpu, allocatableCpu[i]!, requestedMemory, allocatableMemory[i]!);
      if (wAffinity > 0) breakdown.NodeAffinity = scoreAffinity ? normalizeNodeAffinityScore(affinityRaw[f]!, maxAffinityRaw) : 0;
      if (wTaint > 0) breakdown.TaintToleration = scoreTaints ? normalizeTaintTolerationScore(taintCount[f]!, maxTaintCount) : 100;
      scores.push({ nodeId: pool.ids[i]!, score: topScore[t]!, breakdown });
    }
    const best = feasible[topPos[0]!]!;
    return {
      unschedulable: false,
      nodeId: pool.ids[best]!,
      gpuIds: pool.pickGpuIds(best, reqGpu),
      scores,
      weights: this.weightsFor(wLeast, wMost, wBalanced),
      sampled: examined < n,
      examinedNodes: examined,
      feasibleNodes: feasibleCount,
    };
  }

  /**
   * No node passed (so every node was examined): run the filters again in their documented
   * order and count each node under the first one it fails. Slow path, only for the answer.
   */
  private diagnose(pool: NodePool, request: SchedulingRequest, selector: CompiledNodeSelector, spreads: PreparedSpread[] | null): UnschedulableDecision {
    const reasons = this.reasonCounts;
    reasons.clear();
    const { resources, tolerations = [] } = request.spec;
    for (let i = 0; i < pool.size; i++) {
      const node = pool.nodes[i]!;
      let reason =
        nodeReadyFilter(node) ??
        nodeUnschedulableFilter(node) ??
        taintTolerationFilter(node.taints, tolerations) ??
        nodeAffinityFilter(node.labels, selector) ??
        fitFilter(
          pool.allocatableCpu[i]! - pool.usedCpu[i]!,
          pool.allocatableMemory[i]! - pool.usedMemory[i]!,
          pool.maxAgents[i]! - pool.agentCount[i]!,
          resources,
        ) ??
        (resources.gpu > 0 ? gpuFilter(pool.freeGpuCount[i]!, resources.gpu) : null);
      for (const spread of spreads ?? []) {
        if (reason !== null) break;
        const d = spread.domainOf[i]!;
        reason = topologySpreadFilter(d >= 0, d >= 0 ? spread.counts[d]! : 0, spread.minCount, spread.maxSkew);
      }
      // Unreachable unless a filter disagrees with the hot loop; counted so the totals stay honest.
      reason ??= 'internal: passed every filter on re-check';
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    }
    const { message, reasons: sorted } = unschedulableMessage(pool.size, reasons);
    return { unschedulable: true, message, reasons: sorted, examinedNodes: pool.size };
  }

  private weightsFor(wLeast: number, wMost: number, wBalanced: number): ScoreBreakdown {
    const weights: ScoreBreakdown = {};
    if (wLeast > 0) weights.LeastAllocated = wLeast;
    if (wMost > 0) weights.MostAllocated = wMost;
    if (wBalanced > 0) weights.BalancedAllocation = wBalanced;
    if (this.config.nodeAffinityWeight > 0) weights.NodeAffinity = this.config.nodeAffinityWeight;
    if (this.config.taintTolerationWeight > 0) weights.TaintToleration = this.config.taintTolerationWeight;
    return weights;
  }

  /** Resolve each spread constraint to domain counts and the emptiest eligible domain; null when there are none. */
  private prepareSpreads(request: SchedulingRequest, pool: NodePool, selector: CompiledNodeSelector): PreparedSpread[] | null {
    const constraints = request.spec.topologySpread;
    if (constraints === undefined || constraints.length === 0) return null;
    const group = request.spreadGroup ?? '';
    const signature = JSON.stringify([selector.keys, selector.values, selector.required]);
    const prepared: PreparedSpread[] = [];
    for (const constraint of constraints) {
      if (!Number.isInteger(constraint.maxSkew) || constraint.maxSkew < 1) {
        throw new InputError(`topologySpread maxSkew must be an integer >= 1, got ${constraint.maxSkew}`, { agentId: request.id });
      }
      const { domainOf } = pool.topologyDomains(constraint.topologyKey);
      const counts = pool.spreadDomainCounts(group, constraint.topologyKey);
      const eligible = pool.eligibleDomains(constraint.topologyKey, signature, selector);
      let minCount = Number.POSITIVE_INFINITY;
      for (let d = 0; d < counts.length; d++) {
        if (eligible[d] === 1 && counts[d]! < minCount) minCount = counts[d]!;
      }
      // No eligible domain means no node that passes the selector has the label: all fail anyway.
      prepared.push({ domainOf, counts, minCount: minCount === Number.POSITIVE_INFINITY ? 0 : minCount, maxSkew: constraint.maxSkew });
    }
    return prepared;
  }

  private ensureCapacity(n: number): void {
    if (this.feasible.length >= n) return;
    this.feasible = new Int32Array(n);
    this.resourceScore = new Float64Array(n);
    this.affinityRaw = new Float64Array(n);
    this.taintCount = new Int32Array(n);
  }
}
