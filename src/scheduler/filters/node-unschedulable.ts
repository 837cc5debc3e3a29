import type { Node } from '../../domain/node.js';
import { REASONS } from '../reasons.js';

/** NodeUnschedulable: a cordoned node takes no new agents (running ones stay). Null when it passes. */
export function nodeUnschedulableFilter(node: Pick<Node, 'cordoned'>): string | null {
  return node.cordoned ? REASONS.cordoned : null;
}
