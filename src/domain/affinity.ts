/**
 * Node affinity terms, as Kubernetes defines them (a subset: no Gt/Lt, no matchFields).
 * Used by AgentSpec.affinity; evaluated by the scheduler's NodeAffinity plugin.
 */

/** One label test. Requirements inside a term are ANDed. */
export interface NodeSelectorRequirement {
  /** Node label key. */
  key: string;
  /**
   * In: the label exists and its value is one of `values`.
   * NotIn: the label is absent, or its value is none of `values`.
   * Exists / DoesNotExist: the label key is present / absent (`values` ignored).
   */
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[] | undefined;
}

/**
 * A set of requirements that must all hold. Terms in a list are ORed. As in Kubernetes,
 * a term with no requirements matches no node.
 */
export interface NodeSelectorTerm {
  matchExpressions: NodeSelectorRequirement[];
}

/** Where an agent must (required) or would like to (preferred) run. */
export interface NodeAffinity {
  /** The node must match at least one term. Absent or empty: no constraint. */
  required?: NodeSelectorTerm[] | undefined;
  /** Each matching term adds its weight (1-100) to the node's NodeAffinity score. */
  preferred?: { weight: number; term: NodeSelectorTerm }[] | undefined;
}

/**
 * Keep agents of one spread group evenly spread over the values of a node label
 * (DoNotSchedule semantics: a node whose domain would exceed `maxSkew` is rejected).
 */
export interface TopologySpreadConstraint {
  /** Largest allowed difference between the fullest and the emptiest domain, >= 1. */
  maxSkew: number;
  /** Node label whose values are the domains, e.g. "topology.kubernetes.io/zone". */
  topologyKey: string;
}
