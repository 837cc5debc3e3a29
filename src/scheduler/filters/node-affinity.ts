import type { NodeSelectorRequirement, NodeSelectorTerm } from '../../domain/affinity.js';
import { REASONS } from '../reasons.js';

/** nodeSelector and required affinity terms, flattened once per decision so the per-node check allocates nothing. */
export interface CompiledNodeSelector {
  /** nodeSelector keys; `values[i]` is the value `keys[i]` must have. */
  keys: readonly string[];
  values: readonly string[];
  /** Required terms (ORed); empty means no affinity constraint. */
  required: readonly NodeSelectorTerm[];
  /** False when there is nothing to check: the filter then passes every node. */
  active: boolean;
}

const MATCH_ALL: CompiledNodeSelector = Object.freeze({ keys: [], values: [], required: [], active: false });

export function compileNodeSelector(
  nodeSelector: Readonly<Record<string, string>>,
  required: readonly NodeSelectorTerm[] | undefined,
): CompiledNodeSelector {
  const keys = Object.keys(nodeSelector);
  if (keys.length === 0 && (required === undefined || required.length === 0)) return MATCH_ALL;
  const values = keys.map((key) => nodeSelector[key] as string);
  const terms = required ?? [];
  return { keys, values, required: terms, active: keys.length > 0 || terms.length > 0 };
}

export function matchesRequirement(labels: Readonly<Record<string, string>>, requirement: NodeSelectorRequirement): boolean {
  const value = labels[requirement.key];
  switch (requirement.operator) {
    case 'In':
      return value !== undefined && (requirement.values ?? []).includes(value);
    case 'NotIn':
      return value === undefined || !(requirement.values ?? []).includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
  }
}

/** All requirements must hold; an empty term matches nothing (Kubernetes semantics). */
export function matchesTerm(labels: Readonly<Record<string, string>>, term: NodeSelectorTerm): boolean {
  if (term.matchExpressions.length === 0) return false;
  for (const requirement of term.matchExpressions) {
    if (!matchesRequirement(labels, requirement)) return false;
  }
  return true;
}

/**
 * NodeSelector + required NodeAffinity: every nodeSelector label must be equal, and when
 * required terms exist at least one must match. Null when the node passes.
 */
export function nodeAffinityFilter(labels: Readonly<Record<string, string>>, selector: CompiledNodeSelector): string | null {
  if (!selector.active) return null;
  const { keys, values, required } = selector;
  for (let i = 0; i < keys.length; i++) {
    if (labels[keys[i] as string] !== values[i]) return REASONS.nodeSelector;
  }
  if (required.length === 0) return null;
  for (const term of required) {
    if (matchesTerm(labels, term)) return null;
  }
  return REASONS.nodeSelector;
}
