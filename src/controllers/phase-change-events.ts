import type { Agent, AgentStatus, Phase } from '../domain/agent.js';
import type { PlatformEvent } from '../domain/event.js';
import type { DecisionEvent } from './agent-decision.js';

/** What a stored event says about the phase change it was written with (`data.from`, `data.to`). */
export interface PhaseChangeData {
  from: Phase;
  to: Phase;
}

/**
 * Makes the events stored with a status write name the phase change, if there is one, so
 * every transition has a stored event in its own transaction (the live `PhaseChanged` on
 * the bus is not stored). The last event of the write (the outcome: `BackOff` after
 * `OOMKilled`, `Scheduled`, `Started`, ...) gets `data.from` and `data.to` beside its own
 * data; a write that changes the phase with no event at all (a restart leaving its back-off,
 * a start after a stop, a delete waiting for an unreachable node) gets one event made from
 * the new status's reason and message. Adding to the existing event, not one event per
 * transition, keeps the common path at the inserts it had: one per transition at most.
 * Pure; returns `events` itself when the phase does not change.
 */
export function withPhaseChange<E extends DecisionEvent>(from: Pick<AgentStatus, 'phase'>, to: Pick<AgentStatus, 'phase' | 'reason' | 'message'>, events: readonly E[]): (E | DecisionEvent)[] {
  if (from.phase === to.phase) return events as E[];
  const change: PhaseChangeData = { from: from.phase, to: to.phase };
  const last = events.at(-1);
  if (last === undefined) {
    return [
      {
        type: to.phase === 'Failed' ? 'Warning' : 'Normal',
        reason: to.reason ?? to.phase,
        message: to.message ?? `${from.phase} -> ${to.phase}`,
        data: change,
      },
    ];
  }
  return [...events.slice(0, -1), { ...last, data: withPhaseData(last.data, change) }];
}

/**
 * The live-only `PhaseChanged` event (not stored, id 0) that SSE clients and the admission
 * queue hear when an agent's phase moves; whoever writes the change publishes it.
 */
export function phaseChangedEvent(agent: Pick<Agent, 'id' | 'tenantId'>, from: Phase, to: Phase, timeMs: number): PlatformEvent {
  return { id: 0, tenantId: agent.tenantId, objectKind: 'Agent', objectId: agent.id, type: 'Normal', reason: 'PhaseChanged', message: `${from} -> ${to}`, data: { from, to }, time: timeMs };
}

/** `data` with `from` and `to` added: merged into an object, or beside a non-object value as `detail`. */
export function withPhaseData(data: unknown, change: PhaseChangeData): Record<string, unknown> {
  if (data === undefined || data === null) return { ...change };
  if (typeof data === 'object' && !Array.isArray(data)) return { ...(data as Record<string, unknown>), ...change };
  return { detail: data, ...change };
}
