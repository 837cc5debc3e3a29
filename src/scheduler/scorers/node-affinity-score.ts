import type { NodeSelectorTerm } from '../../domain/affinity.js';
import { matchesTerm } from '../filters/node-affinity.js';
import { MAX_NODE_SCORE } from './max-node-score.js';

/** Raw NodeAffinity score: the sum of the weights of the preferred terms the node matches. */
export function nodeAffinityRawScore(
  labels: Readonly<Record<string, string>>,
  preferred: readonly { readonly weight: number; readonly term: NodeSelectorTerm }[],
): number {
  let sum = 0;
  for (const { weight, term } of preferred) {
    if (matchesTerm(labels, term)) sum += weight;
  }
  return sum;
}

/** Normalised over the candidates: raw * 100 / max raw; every node 0 when no node matches anything. */
export function normalizeNodeAffinityScore(raw: number, maxRaw: number): number {
  return maxRaw > 0 ? (raw * MAX_NODE_SCORE) / maxRaw : 0;
}
