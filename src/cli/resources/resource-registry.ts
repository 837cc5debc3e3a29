import { InputError } from '../../domain/errors.js';
import type { ResourceKind } from '../resource-kind.js';
import { agentResource } from './agent-resource.js';
import { nodeResource } from './node-resource.js';

/** Every kind `get` and `describe` know. Add nodes, tenants, ... here. */
export const RESOURCE_KINDS: readonly ResourceKind[] = [agentResource, nodeResource];

/** Finds a kind by plural, singular or short name, case-insensitively. */
export function findResourceKind(word: string): ResourceKind {
  const lower = word.toLowerCase();
  const kind = RESOURCE_KINDS.find((k) => k.names.includes(lower));
  if (!kind) {
    const known = RESOURCE_KINDS.map((k) => k.names[0]).join(', ');
    throw new InputError(`unknown resource type "${word}"; known: ${known}`, { resource: word }, 'UNKNOWN_RESOURCE');
  }
  return kind;
}
