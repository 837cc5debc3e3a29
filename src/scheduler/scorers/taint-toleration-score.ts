import type { Toleration } from '../../domain/agent.js';
import type { Taint } from '../../domain/node.js';
import { toleratesTaint } from '../filters/tolerates-taint.js';
import { MAX_NODE_SCORE } from './max-node-score.js';

/**
 * Raw TaintToleration score: how many PreferNoSchedule taints the agent does not tolerate.
 * Only tolerations with no effect or effect PreferNoSchedule count, as in kube-scheduler.
 */
export function intolerablePreferNoScheduleCount(taints: readonly Taint[], tolerations: readonly Toleration[]): number {
  let count = 0;
  for (const taint of taints) {
    if (taint.effect === 'PreferNoSchedule' && !isPreferNoScheduleTolerated(taint, tolerations)) count++;
  }
  return count;
}

/** True when a toleration with no effect or effect PreferNoSchedule matches the taint. */
export function isPreferNoScheduleTolerated(taint: Taint, tolerations: readonly Toleration[]): boolean {
  for (const toleration of tolerations) {
    if ((toleration.effect === undefined || toleration.effect === 'PreferNoSchedule') && toleratesTaint(toleration, taint)) return true;
  }
  return false;
}

/** Normalised and reversed over the candidates: fewer intolerable taints, higher score; all 100 when none has any. */
export function normalizeTaintTolerationScore(count: number, maxCount: number): number {
  return maxCount > 0 ? MAX_NODE_SCORE - (count * MAX_NODE_SCORE) / maxCount : MAX_NODE_SCORE;
}
