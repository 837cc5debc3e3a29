import { ISOLATION_CLASSES, type IsolationClass } from '../domain/agent.js';
import { InputError } from '../domain/errors.js';

const rank = (c: IsolationClass): number => ISOLATION_CLASSES.indexOf(c);

/** The stronger of two isolation classes (gvisor > runc). */
export const strongerIsolation = (a: IsolationClass, b: IsolationClass): IsolationClass => (rank(a) >= rank(b) ? a : b);

/** Parses a configured class name; throws InputError naming `field` otherwise. */
export function parseIsolationClass(value: string, field: string): IsolationClass {
  if ((ISOLATION_CLASSES as readonly string[]).includes(value)) return value as IsolationClass;
  throw new InputError(`${field}: "${value}" is not an isolation class; one of ${ISOLATION_CLASSES.join(', ')}`, { field }, 'INVALID_ISOLATION');
}

/** Inputs of the isolation decision for one agent. */
export interface IsolationInputs {
  /** What the agent's spec asks for; absent: runc. */
  requested?: IsolationClass | undefined;
  /** The platform's minimum (AGENT_PLATFORM_MIN_ISOLATION). */
  platformMinimum: IsolationClass;
  /** The tenant's minimum, if tenants set one. */
  tenantMinimum?: IsolationClass | undefined;
}

/**
 * The class an agent runs in: what it asked for, raised to the platform's and its
 * tenant's minimum. Never lowered: asking for runc where gvisor is required gives gvisor
 * (not an error), so a platform can raise the floor without breaking existing manifests.
 */
export function effectiveIsolation(inputs: IsolationInputs): IsolationClass {
  let cls = strongerIsolation(inputs.requested ?? 'runc', inputs.platformMinimum);
  if (inputs.tenantMinimum !== undefined) cls = strongerIsolation(cls, inputs.tenantMinimum);
  return cls;
}
