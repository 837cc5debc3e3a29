import type { Node } from '../../domain/node.js';
import { REASONS } from '../reasons.js';

/** NodeReady: the node must report Ready and must not be marked unhealthy. Null when it passes. */
export function nodeReadyFilter(node: Pick<Node, 'ready' | 'unhealthy'>): string | null {
  if (!node.ready) return REASONS.notReady;
  if (node.unhealthy) return REASONS.unhealthy;
  return null;
}
