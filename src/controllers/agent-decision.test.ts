import { describe, expect, it } from 'vitest';
import type { Agent, AgentStatus, RestartPolicy } from '../domain/agent.js';
import { ManualClock } from '../domain/clock.js';
import type { ObservedContainer } from '../runtime/runtime.js';
import { decide, type DecisionConfig } from './agent-decision.js';

const cfg: DecisionConfig = { startTimeoutMs: 120_000, stopTimeoutMs: 60_000, deleteTimeoutMs: 120_000, stopGraceMs: 10_000 };

function agent(status: Partial<AgentStatus>, opts: { desired?: Agent['desired']; restartPolicy?: RestartPolicy; timeoutSeconds?: number; now?: number } = {}): Agent {
  const now = opts.now ?? 0;
  return {
    id: 'a1',
    tenantId: 'default',
    name: 'x',
    labels: {},
    spec: {
      image: 'img',
      command: [],
      args: [],
      env: {},
      resources: { cpuMillicores: 100, memoryMiB: 64, gpu: 0, cpuLimitMillicores: 100, memoryLimitMiB: 64 },
      restartPolicy: opts.restartPolicy ?? 'Never',
      schedulingPolicy: 'balanced',
      priority: 0,
      nodeSelector: {},
      tolerations: [],
      timeoutSeconds: opts.timeoutSeconds,
    },
    desired: opts.desired ?? 'running',
    status: { phase: 'Pending', restarts: 0, phaseSince: now, ...status },
    createdAt: now,
    updatedAt: now,
    version: 1,
  };
}

const container = (state: ObservedContainer['state'], extra: Partial<ObservedContainer> = {}): ObservedContainer => ({
  containerId: 'c1',
  agentId: 'a1',
  state,
  oomKilled: false,
  ...extra,
});

describe('decide: the happy path', () => {
  const clock = new ManualClock(1_000_000);
  it('schedules an unbound pending agent', () => {
    expect(decide(agent({}), undefined, clock.now(), cfg).actions).toEqual([{ type: 'schedule' }]);
  });
  it('creates and starts on the bound node, recording Starting first', () => {
    const d = decide(agent({ node: 'n1' }), undefined, clock.now(), cfg);
    expect(d.actions).toEqual([{ type: 'createAndStart' }]);
    expect(d.status?.phase).toBe('Starting');
    expect(d.status?.phaseSince).toBe(clock.now());
  });
  it('adopts a running container found after a crash (no duplicate create)', () => {
    const d = decide(agent({ node: 'n1', phase: 'Starting' }), container('running', { startedAt: 5 }), clock.now(), cfg);
    expect(d.actions).toEqual([]);
    expect(d.status).toMatchObject({ phase: 'Running', containerId: 'c1', startedAt: 5 });
  });
  it('starts a created-but-not-started container', () => {
    expect(decide(agent({ node: 'n1', phase: 'Starting', phaseSince: clock.now() }), container('created'), clock.now(), cfg).actions).toEqual([{ type: 'start' }]);
  });
  it('fails with StartError when the start failed and Docker kept the container "created" with an error', () => {
    const error = 'exec: "/nonexistent": stat /nonexistent: no such file or directory';
    const d = decide(agent({ node: 'n1', phase: 'Starting', phaseSince: clock.now() }), container('created', { error }), clock.now(), cfg);
    expect(d.actions).toEqual([]);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'StartError', message: error });
    expect(d.events).toEqual([{ type: 'Warning', reason: 'StartError', message: error }]);
  });
  it('records success with exit code 0', () => {
    const d = decide(agent({ node: 'n1', phase: 'Running' }), container('exited', { exitCode: 0, finishedAt: 9, startedAt: 3 }), clock.now(), cfg);
    expect(d.status).toMatchObject({ phase: 'Succeeded', reason: 'Completed', exitCode: 0, finishedAt: 9, startedAt: 3 });
  });
  it('does nothing for a finished agent', () => {
    expect(decide(agent({ node: 'n1', phase: 'Succeeded' }), container('exited', { exitCode: 0 }), clock.now(), cfg)).toEqual({ actions: [], events: [] });
  });
});

describe('decide: failures and restarts', () => {
  const now = 10_000_000;
  it('Never: non-zero exit fails with reason Error', () => {
    const d = decide(agent({ node: 'n1', phase: 'Running' }), container('exited', { exitCode: 3 }), now, cfg);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'Error', exitCode: 3 });
  });
  it('OOM kill fails with reason OOMKilled', () => {
    const d = decide(agent({ node: 'n1', phase: 'Running' }), container('exited', { exitCode: 137, oomKilled: true }), now, cfg);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'OOMKilled', exitCode: 137 });
  });
  it('OnFailure: waits with exponential backoff, reason CrashLoopBackOff', () => {
    const delays: number[] = [];
    let a = agent({ node: 'n1', phase: 'Running' }, { restartPolicy: 'OnFailure' });
    for (let i = 0; i < 5; i++) {
      const d = decide(a, container('exited', { exitCode: 1 }), now, cfg);
      expect(d.status).toMatchObject({ phase: 'Pending', reason: 'CrashLoopBackOff', restarts: i + 1 });
      delays.push(d.status!.nextAttemptAt! - now);
      expect(d.requeueAfterMs).toBe(delays[i]);
      a = { ...a, status: { ...d.status!, phase: 'Running' } };
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000]);
  });
  it('OnFailure: exit 0 is success, no restart', () => {
    const d = decide(agent({ node: 'n1', phase: 'Running' }, { restartPolicy: 'OnFailure' }), container('exited', { exitCode: 0 }), now, cfg);
    expect(d.status?.phase).toBe('Succeeded');
  });
  it('Always: restarts even after exit 0', () => {
    const d = decide(agent({ node: 'n1', phase: 'Running' }, { restartPolicy: 'Always' }), container('exited', { exitCode: 0 }), now, cfg);
    expect(d.status).toMatchObject({ phase: 'Pending', reason: 'CrashLoopBackOff', restarts: 1 });
  });
  it('backoff: waits until nextAttemptAt, then starts the same container', () => {
    const a = agent({ node: 'n1', phase: 'Pending', reason: 'CrashLoopBackOff', nextAttemptAt: now + 2000, restarts: 1 }, { restartPolicy: 'Always' });
    const early = decide(a, container('exited', { exitCode: 1 }), now, cfg);
    expect(early.actions).toEqual([]);
    expect(early.requeueAfterMs).toBe(2000);
    const due = decide(a, container('exited', { exitCode: 1 }), now + 2000, cfg);
    expect(due.actions).toEqual([{ type: 'start' }]);
    expect(due.status?.phase).toBe('Starting');
  });
  it('a container removed under a running Always agent is recreated after backoff', () => {
    const d = decide(agent({ node: 'n1', phase: 'Running', containerId: 'c1' }, { restartPolicy: 'Always' }), undefined, now, cfg);
    expect(d.status).toMatchObject({ phase: 'Pending', reason: 'CrashLoopBackOff', restarts: 1 });
    expect(d.status?.containerId).toBeUndefined();
  });
  it('a container removed under a running Never agent fails it', () => {
    const d = decide(agent({ node: 'n1', phase: 'Running' }), undefined, now, cfg);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'ContainerMissing' });
  });
  it('a start error reported by the runtime fails the agent', () => {
    const d = decide(agent({ node: 'n1', phase: 'Starting' }), container('exited', { exitCode: 127, error: 'exec: "nope": not found' }), now, cfg);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'StartError' });
  });
});

describe('decide: deadlines (manual clock)', () => {
  it('Starting for over the start timeout -> Failed StartTimeout', () => {
    const clock = new ManualClock(0);
    const a = agent({ node: 'n1', phase: 'Starting', phaseSince: clock.now() });
    expect(decide(a, container('created'), clock.now(), cfg).status?.phase).toBe('Starting');
    clock.advance(cfg.startTimeoutMs);
    const d = decide(a, container('created'), clock.now(), cfg);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'StartTimeout' });
    expect(d.actions).toEqual([{ type: 'remove' }]);
  });
  it('timeoutSeconds stops a long runner with DeadlineExceeded and requeues at the deadline before that', () => {
    const clock = new ManualClock(0);
    const a = agent({ node: 'n1', phase: 'Running', startedAt: 0 }, { timeoutSeconds: 5 });
    clock.advance(2000);
    expect(decide(a, container('running', { startedAt: 0 }), clock.now(), cfg).requeueAfterMs).toBe(3000);
    clock.advance(3000);
    const d = decide(a, container('running', { startedAt: 0 }), clock.now(), cfg);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'DeadlineExceeded' });
    expect(d.actions[0]).toMatchObject({ type: 'stop' });
  });
  it('Stopping past the stop timeout kills and fails with StopTimeout', () => {
    const clock = new ManualClock(0);
    const a = agent({ node: 'n1', phase: 'Stopping', phaseSince: 0 }, { desired: 'stopped' });
    expect(decide(a, container('running'), clock.now(), cfg).actions).toEqual([{ type: 'stop', graceMs: cfg.stopGraceMs }]);
    clock.advance(cfg.stopTimeoutMs);
    const d = decide(a, container('running'), clock.now(), cfg);
    expect(d.actions).toEqual([{ type: 'stop', graceMs: 0 }]);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'StopTimeout' });
  });
  it('Deleting on an unreachable node deletes the record after the delete timeout', () => {
    const clock = new ManualClock(0);
    const a = agent({ node: 'n1', phase: 'Deleting', phaseSince: 0 }, { desired: 'deleted' });
    const early = decide(a, 'unreachable', clock.now(), cfg);
    expect(early.actions).toEqual([]);
    expect(early.requeueAfterMs).toBeGreaterThan(0);
    clock.advance(cfg.deleteTimeoutMs);
    expect(decide(a, 'unreachable', clock.now(), cfg).actions).toEqual([{ type: 'deleteRecord' }]);
  });
});

describe('decide: stop and delete from every phase', () => {
  const phases = ['Pending', 'Starting', 'Running', 'Succeeded', 'Failed', 'Stopping', 'Stopped', 'Deleting'] as const;
  it.each(phases)('delete from %s removes the container (if any) and the record', (phase) => {
    const a = agent({ node: 'n1', phase }, { desired: 'deleted' });
    expect(decide(a, container('running'), 0, cfg).actions).toEqual([{ type: 'remove' }, { type: 'deleteRecord' }]);
    expect(decide(a, undefined, 0, cfg).actions).toEqual([{ type: 'deleteRecord' }]);
  });
  it('stop of a running agent sends SIGTERM and goes Stopping, then Stopped once exited', () => {
    const a = agent({ node: 'n1', phase: 'Running' }, { desired: 'stopped' });
    const d = decide(a, container('running'), 0, cfg);
    expect(d.actions).toEqual([{ type: 'stop', graceMs: cfg.stopGraceMs }]);
    expect(d.status?.phase).toBe('Stopping');
    const after = decide({ ...a, status: d.status! }, container('exited', { exitCode: 143 }), 10, cfg);
    expect(after.status).toMatchObject({ phase: 'Stopped', exitCode: 143 });
  });
  it('stop of a pending agent without a container is immediate', () => {
    expect(decide(agent({}, { desired: 'stopped' }), undefined, 0, cfg).status?.phase).toBe('Stopped');
  });
  it('a stopped agent asked to run again starts its existing container', () => {
    const d = decide(agent({ node: 'n1', phase: 'Pending', reason: 'StartRequested' }), container('exited', { exitCode: 143 }), 0, cfg);
    expect(d.actions).toEqual([{ type: 'start' }]);
  });
  it('... unless its network mode changed while it was stopped: the container is replaced', () => {
    const stopped = agent({ node: 'n1', phase: 'Pending', reason: 'StartRequested', containerId: 'c1' });
    const replaced = decide({ ...stopped, spec: { ...stopped.spec, network: { mode: 'none' } } }, container('exited', { exitCode: 143, networkMode: 'open' }), 0, cfg);
    expect(replaced.actions).toEqual([{ type: 'remove' }, { type: 'createAndStart' }]);
    expect(replaced.status).toMatchObject({ phase: 'Starting', reason: 'ContainerStarting' });
    expect(replaced.status?.containerId).toBeUndefined();
    expect(replaced.events.map((e) => e.reason)).toEqual(['ContainerReplaced']);
    // Same mode, or a container that does not say (older ones, other runtimes): started again.
    const allowlisted = { ...stopped, spec: { ...stopped.spec, network: { mode: 'allowlist' as const, allow: ['a.example:443'] } } };
    expect(decide(allowlisted, container('exited', { networkMode: 'allowlist' }), 0, cfg).actions).toEqual([{ type: 'start' }]);
    expect(decide(stopped, container('exited', { networkMode: undefined }), 0, cfg).actions).toEqual([{ type: 'start' }]);
    expect(decide(stopped, container('exited', { networkMode: 'none' }), 0, cfg).actions).toEqual([{ type: 'start' }]);
    // A container created but never started (it outlives a stop) is replaced the same way.
    expect(decide({ ...stopped, spec: { ...stopped.spec, network: { mode: 'none' } } }, container('created', { networkMode: 'open' }), 0, cfg).actions).toEqual([{ type: 'remove' }, { type: 'createAndStart' }]);
    expect(decide(stopped, container('created', { networkMode: 'none' }), 0, cfg).actions).toEqual([{ type: 'start' }]);
  });
});

describe('decide: nothing waits forever on a node that never answers', () => {
  it('Starting past the start timeout on an unreachable node: restartable agents are unbound for rescheduling', () => {
    const a = agent({ node: 'n1', phase: 'Starting', phaseSince: 0, containerId: 'c1' }, { restartPolicy: 'Always' });
    expect(decide(a, 'unreachable', cfg.startTimeoutMs - 1, cfg).status).toBeUndefined();
    const d = decide(a, 'unreachable', cfg.startTimeoutMs, cfg);
    expect(d.status).toMatchObject({ phase: 'Pending', reason: 'NodeUnreachable' });
    expect(d.status?.node).toBeUndefined();
    expect(d.status?.containerId).toBeUndefined();
  });
  it('... and Never agents fail with NodeLost', () => {
    const d = decide(agent({ node: 'n1', phase: 'Pending', phaseSince: 0 }), 'unreachable', cfg.startTimeoutMs, cfg);
    expect(d.status).toMatchObject({ phase: 'Failed', reason: 'NodeLost' });
  });
  it('a stop on an unreachable node is recorded after the stop timeout', () => {
    const a = agent({ node: 'n1', phase: 'Stopping', phaseSince: 0 }, { desired: 'stopped' });
    expect(decide(a, 'unreachable', cfg.stopTimeoutMs, cfg).status).toMatchObject({ phase: 'Stopped', reason: 'NodeUnreachable' });
  });
  it('Deleting past its deadline on a reachable node deletes the record without waiting for the container', () => {
    const a = agent({ node: 'n1', phase: 'Deleting', phaseSince: 0 }, { desired: 'deleted' });
    expect(decide(a, container('running'), cfg.deleteTimeoutMs - 1, cfg).actions).toEqual([{ type: 'remove' }, { type: 'deleteRecord' }]);
    expect(decide(a, container('running'), cfg.deleteTimeoutMs, cfg).actions).toEqual([{ type: 'deleteRecord' }]);
  });
  it('creating a container forgets a recorded container id, which can only be stale', () => {
    const d = decide(agent({ node: 'n1', phase: 'Pending', containerId: 'old' }), undefined, 0, cfg);
    expect(d.actions).toEqual([{ type: 'createAndStart' }]);
    expect(d.status?.containerId).toBeUndefined();
  });
});
