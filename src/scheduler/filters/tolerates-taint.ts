import type { Toleration } from '../../domain/agent.js';
import type { Taint } from '../../domain/node.js';

/**
 * Kubernetes toleration matching: the effect must match when set, the key must match when
 * set (an empty key with Exists tolerates every taint), and with Equal (the default
 * operator) the values must be equal, a missing value counting as "".
 */
export function toleratesTaint(toleration: Toleration, taint: Taint): boolean {
  if (toleration.effect !== undefined && toleration.effect !== taint.effect) return false;
  if (toleration.key !== undefined && toleration.key !== '' && toleration.key !== taint.key) return false;
  if (toleration.operator === 'Exists') return true;
  if ((toleration.key ?? '') === '') return false; // Equal needs a key; Kubernetes validation rejects it otherwise.
  return (toleration.value ?? '') === (taint.value ?? '');
}
