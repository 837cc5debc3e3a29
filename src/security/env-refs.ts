import type { AgentSpec, SecretEnvRef } from '../domain/agent.js';

/** An env value as the API speaks it: plain text or a secret reference. */
export type EnvValue = string | { secretRef: string };

/**
 * Splits API env into the plain values kept in the spec and the secret references, which
 * are kept apart so no code path can mistake a reference for a value (or store a value).
 */
export function splitEnv(env: Record<string, EnvValue> | undefined): { env: Record<string, string>; secretEnv?: Record<string, SecretEnvRef> } {
  const plain: Record<string, string> = {};
  const refs: Record<string, SecretEnvRef> = {};
  for (const [name, value] of Object.entries(env ?? {})) {
    if (typeof value === 'string') plain[name] = value;
    else refs[name] = { name: value.secretRef };
  }
  return Object.keys(refs).length > 0 ? { env: plain, secretEnv: refs } : { env: plain };
}

/** The env of a spec as the API shows it: secret references as `{secretRef}`, never values. */
export function joinEnv(spec: Pick<AgentSpec, 'env' | 'secretEnv'>): Record<string, EnvValue> {
  const out: Record<string, EnvValue> = { ...spec.env };
  for (const [name, ref] of Object.entries(spec.secretEnv ?? {})) out[name] = { secretRef: ref.name };
  return out;
}
