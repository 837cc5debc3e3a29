import { describe, expect, it } from 'vitest';
import { AGENT_ID_LABEL } from '../runtime.js';
import { EGRESS_LABEL, START_GATE } from './kube-names.js';
import type { KubeContainerState, KubePod } from './kube-types.js';
import { observedFromPod, podTransitionEvents } from './pod-status.js';

const pod = (state: KubeContainerState | undefined, extra: { phase?: string; gated?: boolean; uid?: string; deleting?: boolean; reason?: string } = {}): KubePod => ({
  metadata: {
    name: 'ap-a1',
    namespace: 'ap-t',
    uid: extra.uid ?? 'u1',
    labels: { [AGENT_ID_LABEL]: 'a1' },
    creationTimestamp: '2026-01-01T00:00:00Z',
    ...(extra.deleting ? { deletionTimestamp: '2026-01-01T00:01:00Z' } : {}),
  },
  spec: { containers: [{ name: 'agent', image: 'img:1' }], ...(extra.gated ? { schedulingGates: [{ name: START_GATE }] } : {}) },
  status: {
    phase: (extra.phase ?? 'Pending') as 'Pending',
    ...(extra.reason ? { reason: extra.reason, message: 'too long' } : {}),
    containerStatuses: state ? [{ name: 'agent', image: 'img:1', state }] : undefined,
  },
});

const T0 = '2026-01-01T00:00:10Z';
const T1 = '2026-01-01T00:00:12Z';

describe('observedFromPod', () => {
  it('reports the network mode the Pod was made for, from its egress label', () => {
    const held = pod(undefined, { gated: true });
    expect(observedFromPod(held).networkMode).toBe('none');
    for (const mode of ['allowlist', 'open'] as const) {
      expect(observedFromPod({ ...held, metadata: { ...held.metadata, labels: { ...held.metadata.labels, [EGRESS_LABEL]: mode } } }).networkMode).toBe(mode);
    }
  });

  it('reads a gated or waiting Pod as created', () => {
    const held = observedFromPod(pod(undefined, { gated: true }));
    expect(held).toMatchObject({ containerId: 'ap-a1', agentId: 'a1', state: 'created' });
    expect(held.error).toBeUndefined();
    expect(observedFromPod(pod({ waiting: { reason: 'ContainerCreating' } })).state).toBe('created');
  });

  it('reports unpullable images as ImageNotFound errors on a created container', () => {
    for (const reason of ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName']) {
      const o = observedFromPod(pod({ waiting: { reason, message: 'nope' } }));
      expect(o.state).toBe('created');
      expect(o.error).toMatch(/^ImageNotFound: image "img:1"/);
    }
    expect(observedFromPod(pod({ waiting: { reason: 'CreateContainerConfigError', message: 'bad' } })).error).toBe('CreateContainerConfigError: bad');
  });

  it('reads running and terminated containers with times; an end counts to the end of its second', () => {
    expect(observedFromPod(pod({ running: { startedAt: T0 } }, { phase: 'Running' }))).toMatchObject({ state: 'running', startedAt: Date.parse(T0) });
    expect(observedFromPod(pod({ running: { startedAt: T0 } }, { phase: 'Running', deleting: true })).state).toBe('removing');
    const done = observedFromPod(pod({ terminated: { exitCode: 3, reason: 'Error', startedAt: T0, finishedAt: T1 } }, { phase: 'Failed' }));
    expect(done).toMatchObject({ state: 'exited', exitCode: 3, oomKilled: false, startedAt: Date.parse(T0), finishedAt: Date.parse(T1) + 999 });
    expect(observedFromPod(pod({ terminated: { exitCode: 137, reason: 'OOMKilled', finishedAt: T1 } }, { phase: 'Failed' })).oomKilled).toBe(true);
  });

  it('reads a Pod that ended before its container ran as exited with the reason', () => {
    const o = observedFromPod(pod({ waiting: { reason: 'ContainerCreating' } }, { phase: 'Failed', reason: 'DeadlineExceeded' }));
    expect(o).toMatchObject({ state: 'exited', exitCode: 137 });
    expect(o.startedAt).toBeUndefined();
    expect(o.error).toMatch(/^DeadlineExceeded/);
  });
});

describe('podTransitionEvents', () => {
  const created = pod(undefined, { gated: true });
  const running = pod({ running: { startedAt: T0 } }, { phase: 'Running' });
  const exited = pod({ terminated: { exitCode: 0, startedAt: T0, finishedAt: T1 } }, { phase: 'Succeeded' });

  it('emits create, start, die, destroy once each along a Pod life', () => {
    const actions = [
      ...podTransitionEvents(undefined, created, 1),
      ...podTransitionEvents(created, running, 2),
      ...podTransitionEvents(running, running, 3),
      ...podTransitionEvents(running, exited, 4),
      ...podTransitionEvents(exited, exited, 5),
      ...podTransitionEvents(exited, undefined, 6),
    ].map((e) => e.action);
    expect(actions).toEqual(['create', 'start', 'die', 'destroy']);
  });

  it('times start and die from the container, and reports oom before die', () => {
    const oom = pod({ terminated: { exitCode: 137, reason: 'OOMKilled', startedAt: T0, finishedAt: T1 } }, { phase: 'Failed' });
    const events = podTransitionEvents(running, oom, 99);
    expect(events.map((e) => e.action)).toEqual(['oom', 'die']);
    expect(events[1]!.time).toBe(Date.parse(T1) + 999);
    expect(podTransitionEvents(created, running, 99)[0]).toEqual({ action: 'start', containerId: 'ap-a1', agentId: 'a1', time: Date.parse(T0) });
  });

  it('treats a running Pod that disappears as died and destroyed, and a replacement (new uid) as new', () => {
    expect(podTransitionEvents(running, undefined, 7).map((e) => e.action)).toEqual(['die', 'destroy']);
    const replacement = { ...running, metadata: { ...running.metadata, uid: 'u2' } };
    expect(podTransitionEvents(exited, replacement, 8).map((e) => e.action)).toEqual(['start']);
  });
});
