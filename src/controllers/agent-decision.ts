import type { Agent, AgentStatus } from '../domain/agent.js';
import { isTerminal } from '../domain/agent.js';
import { restartBackoffMs } from '../domain/backoff.js';
import type { ObservedContainer } from '../runtime/runtime.js';

/**
 * The agent controller's brain, as a pure function: given desired state, the last
 * recorded status and what the runtime reports now, say what to do. Level-triggered:
 * it never assumes an earlier step happened, so running it again after a crash at any
 * point converges. The executor (agent-controller.ts) performs the actions in order
 * and then writes `status`.
 */

export type Action =
  /** Pick a node (scheduler) and record it; nothing else happens in this pass. */
  | { type: 'schedule' }
  /** Create (idempotent by name) and start the container on status.node. */
  | { type: 'createAndStart' }
  /** Start the existing (created or exited) container. */
  | { type: 'start' }
  | { type: 'stop'; graceMs: number }
  | { type: 'remove' }
  | { type: 'deleteRecord' };

export interface DecisionEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  data?: unknown;
}

export interface Decision {
  actions: Action[];
  /** Status to record after the actions succeed (undefined: unchanged). */
  status?: AgentStatus | undefined;
  /** Look again after this long even without an event (deadlines, backoff). */
  requeueAfterMs?: number | undefined;
  events: DecisionEvent[];
}

export interface DecisionConfig {
  startTimeoutMs: number;
  stopTimeoutMs: number;
  deleteTimeoutMs: number;
  stopGraceMs: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

/**
 * `observed`: the container as the runtime reports it; undefined when it does not
 * exist; 'unreachable' when the node's runtime did not answer.
 */
export function decide(agent: Agent, observed: ObservedContainer | undefined | 'unreachable', now: number, cfg: DecisionConfig): Decision {
  const s = agent.status;
  const none: Decision = { actions: [], events: [] };
  const to = (patch: Partial<AgentStatus>, clear: (keyof AgentStatus)[] = []): AgentStatus => {
    const next: AgentStatus = { ...s, ...patch };
    if (patch.phase !== undefined && patch.phase !== s.phase) next.phaseSince = now;
    for (const k of clear) delete next[k];
    return next;
  };
  const inPhaseMs = now - s.phaseSince;

  // ---- delete: from every phase, stuck ones included -------------------------------
  if (agent.desired === 'deleted') {
    if (observed === 'unreachable') {
      if (s.phase === 'Deleting' && inPhaseMs >= cfg.deleteTimeoutMs) {
        // The node is gone; the record goes now and the orphan sweep removes the
        // container if the node ever returns.
        return { actions: [{ type: 'deleteRecord' }], events: [{ type: 'Warning', reason: 'DeleteTimeout', message: `node ${s.node} did not answer for ${Math.round(inPhaseMs / 1000)}s; record deleted, container will be removed if the node returns` }] };
      }
      return {
        actions: [],
        status: s.phase === 'Deleting' ? undefined : to({ phase: 'Deleting', reason: 'NodeUnreachable', message: `waiting for node ${s.node} to remove the container` }),
        requeueAfterMs: Math.min(5_000, Math.max(1, cfg.deleteTimeoutMs - inPhaseMs)),
        events: [],
      };
    }
    if (observed && s.phase === 'Deleting' && inPhaseMs >= cfg.deleteTimeoutMs) {
      // The node answers but keeps failing to remove the container: the record goes
      // anyway (a DELETE must not hang forever) and the orphan sweep retries the container.
      return { actions: [{ type: 'deleteRecord' }], events: [{ type: 'Warning', reason: 'DeleteTimeout', message: `container not removed within ${Math.round(inPhaseMs / 1000)}s; record deleted, the orphan sweep keeps trying` }] };
    }
    const actions: Action[] = observed ? [{ type: 'remove' }] : [];
    actions.push({ type: 'deleteRecord' });
    return { actions, events: [] };
  }

  if (observed === 'unreachable') {
    // Losing a node is the node controller's business (reschedule or NodeLost when it goes
    // NotReady). But phases with a deadline keep it here too, so nothing waits forever on
    // a node that never comes back (removed from config, or NotReady missed in a handover).
    const restartable = agent.spec.restartPolicy !== 'Never';
    if (agent.desired === 'stopped' && s.phase !== 'Stopped' && !isTerminal(s.phase) && inPhaseMs >= cfg.stopTimeoutMs) {
      return { actions: [], status: to({ phase: 'Stopped', reason: 'NodeUnreachable', message: `node ${s.node} did not answer; recorded as stopped`, finishedAt: now }, ['nextAttemptAt']), events: [{ type: 'Warning', reason: 'NodeUnreachable', message: `node ${s.node} did not answer while stopping` }] };
    }
    if (agent.desired === 'running' && (s.phase === 'Pending' || s.phase === 'Starting') && inPhaseMs >= cfg.startTimeoutMs) {
      if (restartable) {
        return {
          actions: [],
          status: to({ phase: 'Pending', reason: 'NodeUnreachable', message: `node ${s.node} did not answer for ${Math.round(inPhaseMs / 1000)}s; rescheduling`, node: undefined, containerId: undefined, gpuIds: undefined }, ['nextAttemptAt']),
          requeueAfterMs: 1,
          events: [{ type: 'Warning', reason: 'NodeUnreachable', message: `node ${s.node} did not answer; rescheduling elsewhere` }],
        };
      }
      return { actions: [], status: to({ phase: 'Failed', reason: 'NodeLost', message: `node ${s.node} did not answer for ${Math.round(inPhaseMs / 1000)}s`, finishedAt: now }), events: [{ type: 'Warning', reason: 'NodeLost', message: `node ${s.node} did not answer` }] };
    }
    return { ...none, requeueAfterMs: 5_000 };
  }

  // ---- stop -------------------------------------------------------------------------
  if (agent.desired === 'stopped') {
    if (s.phase === 'Stopped' || s.phase === 'Succeeded' || s.phase === 'Failed') {
      if (observed?.state === 'running') return { actions: [{ type: 'stop', graceMs: cfg.stopGraceMs }], events: [] };
      return none;
    }
    if (!observed || observed.state !== 'running') {
      return {
        actions: [],
        status: to({ phase: 'Stopped', reason: 'Stopped', message: 'stopped by request', finishedAt: observed?.finishedAt ?? now, ...(observed?.exitCode !== undefined ? { exitCode: observed.exitCode } : {}) }, ['nextAttemptAt']),
        events: [{ type: 'Normal', reason: 'Stopped', message: 'agent stopped' }],
      };
    }
    if (s.phase !== 'Stopping') {
      return {
        actions: [{ type: 'stop', graceMs: cfg.stopGraceMs }],
        status: to({ phase: 'Stopping', reason: 'StopRequested', message: `sending SIGTERM, SIGKILL after ${cfg.stopGraceMs} ms` }),
        requeueAfterMs: 1_000,
        events: [{ type: 'Normal', reason: 'Stopping', message: 'stopping container' }],
      };
    }
    if (inPhaseMs >= cfg.stopTimeoutMs) {
      return {
        actions: [{ type: 'stop', graceMs: 0 }],
        status: to({ phase: 'Failed', reason: 'StopTimeout', message: `still running ${Math.round(inPhaseMs / 1000)}s after the stop request; killed`, finishedAt: now }),
        events: [{ type: 'Warning', reason: 'StopTimeout', message: 'container did not stop in time; killed' }],
      };
    }
    return { actions: [{ type: 'stop', graceMs: cfg.stopGraceMs }], requeueAfterMs: 1_000, events: [] };
  }

  // ---- desired running --------------------------------------------------------------
  if (isTerminal(s.phase)) {
    // Done (or given up); keep the container for its logs. A container somebody
    // started behind our back is stopped again.
    if (observed?.state === 'running') return { actions: [{ type: 'stop', graceMs: cfg.stopGraceMs }], events: [] };
    return none;
  }

  if (!s.node) return { actions: [{ type: 'schedule' }], events: [] };

  if (!observed) {
    if (s.phase === 'Running') {
      // The container vanished under a running agent (removed from outside).
      return restartOrFinish(agent, { exitCode: 137, oomKilled: false, removed: true }, now, cfg, to);
    }
    if (s.nextAttemptAt !== undefined && s.nextAttemptAt > now) return { ...none, requeueAfterMs: s.nextAttemptAt - now };
    if (s.phase === 'Starting' && inPhaseMs >= cfg.startTimeoutMs) return startTimeout(inPhaseMs, now, to);
    return {
      actions: [{ type: 'createAndStart' }],
      // No container exists: a recorded id would be stale, so it goes with this write.
      status: to({ phase: 'Starting', reason: 'ContainerCreating', message: `creating container on node ${s.node}` }, ['nextAttemptAt', 'containerId']),
      requeueAfterMs: cfg.startTimeoutMs,
      events: [],
    };
  }

  switch (observed.state) {
    case 'running':
    case 'restarting': {
      // The recorded start wins once Running, so the deadline matches the startedAt users see.
      const startedAt = (s.phase === 'Running' ? s.startedAt : undefined) ?? observed.startedAt ?? s.startedAt ?? now;
      const timeoutMs = agent.spec.timeoutSeconds !== undefined ? agent.spec.timeoutSeconds * 1000 : undefined;
      if (timeoutMs !== undefined && now - startedAt >= timeoutMs) {
        return {
          actions: [{ type: 'stop', graceMs: cfg.stopGraceMs }],
          status: to({ phase: 'Failed', reason: 'DeadlineExceeded', message: `ran longer than timeoutSeconds=${agent.spec.timeoutSeconds}; stopped`, finishedAt: now }, ['nextAttemptAt']),
          events: [{ type: 'Warning', reason: 'DeadlineExceeded', message: `agent exceeded its ${agent.spec.timeoutSeconds}s timeout and was stopped` }],
        };
      }
      const requeueAfterMs = timeoutMs !== undefined ? Math.max(1, startedAt + timeoutMs - now) : undefined;
      if (s.phase !== 'Running') {
        return {
          actions: [],
          status: to({ phase: 'Running', reason: 'Started', message: `running on node ${s.node}`, containerId: observed.containerId, startedAt }, ['nextAttemptAt', 'finishedAt']),
          requeueAfterMs,
          events: [{ type: 'Normal', reason: 'Started', message: `container started on node ${s.node}` }],
        };
      }
      return { ...none, requeueAfterMs };
    }
    case 'created': {
      if (s.phase === 'Starting' && observed.error) {
        // Docker leaves a container whose start failed (missing executable, bad working
        // dir) in "created" with the error text; starting it again fails the same way, so
        // retrying until the start timeout would only hide the reason for minutes.
        return {
          actions: [],
          status: to({ phase: 'Failed', reason: 'StartError', message: observed.error, finishedAt: now }),
          events: [{ type: 'Warning', reason: 'StartError', message: observed.error }],
        };
      }
      if (s.phase === 'Starting' && inPhaseMs >= cfg.startTimeoutMs) return startTimeout(inPhaseMs, now, to);
      // A container created but never started outlives a stop too (the agent goes straight
      // to Stopped), so a mode changed meanwhile must replace it here as well.
      const replace = replaceForNetworkMode(agent, observed, cfg, to);
      if (replace) return replace;
      return {
        actions: [{ type: 'start' }],
        status: to({ phase: 'Starting', reason: 'ContainerStarting', message: 'starting container', containerId: observed.containerId }),
        requeueAfterMs: cfg.startTimeoutMs,
        events: [],
      };
    }
    case 'paused':
    case 'removing':
      return { ...none, requeueAfterMs: 1_000 };
    case 'exited':
    case 'dead': {
      if (s.phase === 'Pending') {
        // Waiting to restart (backoff) or asked to start again after a stop.
        if (s.nextAttemptAt !== undefined && s.nextAttemptAt > now) return { ...none, requeueAfterMs: s.nextAttemptAt - now };
        const replace = replaceForNetworkMode(agent, observed, cfg, to);
        if (replace) return replace;
        return {
          actions: [{ type: 'start' }],
          status: to({ phase: 'Starting', reason: 'ContainerStarting', message: 'starting container', containerId: observed.containerId }, ['nextAttemptAt']),
          requeueAfterMs: cfg.startTimeoutMs,
          events: [],
        };
      }
      if (s.phase === 'Starting' && observed.error && !observed.startedAt) {
        return {
          actions: [],
          status: to({ phase: 'Failed', reason: 'StartError', message: observed.error, finishedAt: now }),
          events: [{ type: 'Warning', reason: 'StartError', message: observed.error }],
        };
      }
      if (s.phase === 'Starting' && s.startedAt !== undefined && observed.finishedAt !== undefined && observed.finishedAt < s.phaseSince) {
        // An exit from before this start attempt: the start has not happened yet.
        if (inPhaseMs >= cfg.startTimeoutMs) return startTimeout(inPhaseMs, now, to);
        return { actions: [{ type: 'start' }], requeueAfterMs: 1_000, events: [] };
      }
      return restartOrFinish(agent, { exitCode: observed.exitCode ?? 0, oomKilled: observed.oomKilled, removed: false, startedAt: observed.startedAt, finishedAt: observed.finishedAt, containerId: observed.containerId }, now, cfg, to);
    }
  }
}

/**
 * A container made for another network mode than the spec now says (changed while the agent
 * was stopped) cannot be started again: a Docker container can neither leave the network it
 * was created on nor join another from "none". It is replaced. Undefined when the modes agree,
 * or the container does not say which it was made for.
 */
function replaceForNetworkMode(agent: Agent, observed: ObservedContainer, cfg: DecisionConfig, to: (p: Partial<AgentStatus>, clear?: (keyof AgentStatus)[]) => AgentStatus): Decision | undefined {
  const mode = agent.spec.network?.mode ?? 'none';
  if (observed.networkMode === undefined || observed.networkMode === mode) return undefined;
  return {
    actions: [{ type: 'remove' }, { type: 'createAndStart' }],
    status: to({ phase: 'Starting', reason: 'ContainerStarting', message: `replacing the container: network mode ${observed.networkMode} -> ${mode}` }, ['nextAttemptAt', 'containerId']),
    requeueAfterMs: cfg.startTimeoutMs,
    events: [{ type: 'Normal', reason: 'ContainerReplaced', message: `container created for network mode ${observed.networkMode} replaced for mode ${mode}` }],
  };
}

function startTimeout(inPhaseMs: number, now: number, to: (p: Partial<AgentStatus>) => AgentStatus): Decision {
  return {
    actions: [{ type: 'remove' }],
    status: to({ phase: 'Failed', reason: 'StartTimeout', message: `container did not start within ${Math.round(inPhaseMs / 1000)}s`, finishedAt: now }),
    events: [{ type: 'Warning', reason: 'StartTimeout', message: 'container did not start in time' }],
  };
}

function restartOrFinish(
  agent: Agent,
  exit: { exitCode: number; oomKilled: boolean; removed: boolean; startedAt?: number | undefined; finishedAt?: number | undefined; containerId?: string | undefined },
  now: number,
  cfg: DecisionConfig,
  to: (p: Partial<AgentStatus>, clear?: (keyof AgentStatus)[]) => AgentStatus,
): Decision {
  const s = agent.status;
  const failed = exit.exitCode !== 0 || exit.oomKilled || exit.removed;
  const reason = exit.removed ? 'ContainerMissing' : exit.oomKilled ? 'OOMKilled' : failed ? 'Error' : 'Completed';
  const what = exit.removed
    ? 'container disappeared (removed outside the platform)'
    : exit.oomKilled
      ? `killed for exceeding its memory limit of ${agent.spec.resources.memoryLimitMiB}Mi`
      : `exited with code ${exit.exitCode}`;
  const policy = agent.spec.restartPolicy;
  const restart = policy === 'Always' || (policy === 'OnFailure' && failed);
  if (restart) {
    const delayMs = restartBackoffMs(s.restarts, cfg.backoffInitialMs, cfg.backoffMaxMs);
    const events: DecisionEvent[] = [];
    if (exit.oomKilled) events.push({ type: 'Warning', reason: 'OOMKilled', message: what });
    events.push({ type: 'Warning', reason: 'BackOff', message: `${what}; restarting in ${Math.round(delayMs / 1000)}s (restart ${s.restarts + 1})` });
    return {
      // A vanished container is recreated; an exited one is started again.
      actions: [],
      status: to(
        {
          phase: 'Pending',
          reason: 'CrashLoopBackOff',
          message: `${what}; back-off ${Math.round(delayMs / 1000)}s restarting (policy ${policy})`,
          exitCode: exit.exitCode,
          restarts: s.restarts + 1,
          nextAttemptAt: now + delayMs,
          finishedAt: exit.finishedAt ?? now,
          ...(exit.removed ? { containerId: undefined } : {}),
        },
      ),
      requeueAfterMs: delayMs,
      events,
    };
  }
  return {
    actions: [],
    status: to({ phase: failed ? 'Failed' : 'Succeeded', reason, message: what, exitCode: exit.exitCode, finishedAt: exit.finishedAt ?? now, ...(exit.startedAt !== undefined ? { startedAt: exit.startedAt } : {}) }, ['nextAttemptAt']),
    events: [{ type: failed ? 'Warning' : 'Normal', reason, message: what }],
  };
}
