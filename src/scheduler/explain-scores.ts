import type { ScheduleDecision, ScorePluginName } from './decision.js';

const PLUGIN_ORDER: readonly ScorePluginName[] = ['LeastAllocated', 'MostAllocated', 'BalancedAllocation', 'NodeAffinity', 'TaintToleration'];

const round = (value: number): string => (Math.round(value * 100) / 100).toString();

/**
 * One line per top candidate for the scheduling event, e.g.
 * "node-b 187.5 = LeastAllocated 87.5x1 + NodeAffinity 0x2 + TaintToleration 100x1";
 * for an unschedulable decision, its message. Numbers rounded to two decimals for reading
 * only; the decision keeps the exact values.
 */
export function explainScores(decision: ScheduleDecision): string[] {
  if (decision.unschedulable) return [decision.message];
  return decision.scores.map((candidate) => {
    const terms = PLUGIN_ORDER.filter((plugin) => candidate.breakdown[plugin] !== undefined).map(
      (plugin) => `${plugin} ${round(candidate.breakdown[plugin]!)}x${decision.weights[plugin] ?? 0}`,
    );
    return `${candidate.nodeId} ${round(candidate.score)} = ${terms.join(' + ')}`;
  });
}
