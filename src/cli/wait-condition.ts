import { InputError } from '../domain/errors.js';
import { PHASE_NAMES, type AgentJson, type PhaseName } from './api-types.js';

/** What `wait --for` asks for: one of several phases, or the agent being gone. */
export type WaitCondition = { kind: 'phase'; phases: PhaseName[] } | { kind: 'delete' };

/** Phases an agent does not leave on its own (unless a restart is scheduled). */
const TERMINAL: ReadonlySet<PhaseName> = new Set(['Succeeded', 'Failed', 'Stopped']);

/** Parses `phase=Succeeded`, `phase=Succeeded,Failed` (any of) or `delete`; phase names are case-insensitive. */
export function parseWaitCondition(text: string): WaitCondition {
  if (text === 'delete') return { kind: 'delete' };
  const m = /^phase=(.+)$/i.exec(text.trim());
  if (!m) throw new InputError(`--for=${text}: use --for=phase=<Phase> (e.g. phase=Succeeded) or --for=delete`, { value: text }, 'INVALID_ARGUMENT');
  const phases = m[1]!.split(',').map((raw) => {
    const phase = PHASE_NAMES.find((p) => p.toLowerCase() === raw.trim().toLowerCase());
    if (!phase) throw new InputError(`--for=${text}: unknown phase "${raw}"; one of ${PHASE_NAMES.join(', ')}`, { value: text }, 'INVALID_ARGUMENT');
    return phase;
  });
  return { kind: 'phase', phases };
}

export type WaitVerdict = { done: true } | { done: false; stuck: false } | { done: false; stuck: true; why: string };

/**
 * Compares an agent with the wanted phases. "Stuck" means it sits in a terminal phase
 * that is not wanted and nothing will move it: no restart scheduled (nextAttemptAt) and
 * the user has not asked for it to run again after a stop.
 */
export function evaluateWait(agent: AgentJson, phases: readonly PhaseName[]): WaitVerdict {
  const s = agent.status;
  if (phases.includes(s.phase)) return { done: true };
  if (!TERMINAL.has(s.phase) || s.nextAttemptAt) return { done: false, stuck: false };
  // Stopped while desired is running: a start was requested and the agent will move on.
  if (s.phase === 'Stopped' && agent.desiredState === 'running') return { done: false, stuck: false };
  const details = [s.reason && `reason ${s.reason}`, s.exitCode !== undefined && s.exitCode !== null && `exit code ${s.exitCode}`, s.message && `message: ${s.message}`].filter(Boolean).join(', ');
  return { done: false, stuck: true, why: `agent "${agent.name}" is ${s.phase}${details ? ` (${details})` : ''}, not ${phases.join(' or ')}` };
}
