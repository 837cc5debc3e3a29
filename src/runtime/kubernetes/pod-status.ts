import { AGENT_ID_LABEL, type ObservedContainer, type RuntimeEvent } from '../runtime.js';
import { AGENT_CONTAINER_NAME, EGRESS_LABEL, START_GATE } from './kube-names.js';
import type { KubeContainerStatus, KubePod } from './kube-types.js';

/**
 * Waiting reasons that mean the image cannot be had: the kubelet keeps retrying them
 * with backoff, but without a change to the Pod or the registry they never succeed.
 */
const IMAGE_REASONS = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull', 'RegistryUnavailable']);
/** Waiting reasons that mean the container cannot be created from this spec. */
const CONFIG_REASONS = new Set(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError', 'PreCreateHookError', 'PreStartHookError']);

const ms = (time: string | undefined): number | undefined => {
  if (!time) return undefined;
  const value = Date.parse(time);
  return Number.isNaN(value) ? undefined : value;
};

/**
 * Container times from the API have whole seconds: an end time is taken as the end of
 * its second, so a run never seems to end before it started, nor before a start that
 * the platform recorded with milliseconds a moment earlier.
 */
const endMs = (time: string | undefined): number | undefined => {
  const value = ms(time);
  return value === undefined || /\.\d/.test(time!) ? value : value + 999;
};

const agentStatus = (pod: KubePod): KubeContainerStatus | undefined =>
  pod.status?.containerStatuses?.find((c) => c.name === AGENT_CONTAINER_NAME) ?? pod.status?.containerStatuses?.[0];

/** True while the START_GATE holds the Pod: created, not started. */
export const isHeld = (pod: KubePod): boolean => (pod.spec.schedulingGates ?? []).some((g) => g.name === START_GATE);

/** True when the Pod has ended (it can never run again; a restart needs a new Pod). */
export const isPodFinished = (pod: KubePod): boolean => pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';

/**
 * Maps a Pod to the Runtime port's view of a container (pure).
 *
 * - held by the start gate, or not yet running: "created";
 * - waiting on an image that cannot be pulled: "created" with `error` starting
 *   "ImageNotFound:" (the kubelet only finds out after start; the controller turns an
 *   error in "created" into a failed start, as it does for Docker start errors);
 * - other waiting reasons that cannot heal (config errors): "created" with the reason;
 * - container running: "running" ("removing" once the Pod is being deleted);
 * - container terminated, or the Pod ended without one (deadline before start,
 *   eviction): "exited".
 */
/**
 * The network mode the Pod was made for, from its egress label (none: no label). A Pod held
 * before its first start outlives a stop, so the controller compares this with the spec
 * before starting it (and replaces it when the mode changed meanwhile).
 */
function networkModeOf(pod: KubePod): ObservedContainer['networkMode'] {
  const label = pod.metadata.labels?.[EGRESS_LABEL];
  return label === 'allowlist' || label === 'open' ? label : 'none';
}

export function observedFromPod(pod: KubePod): ObservedContainer {
  const base = {
    containerId: pod.metadata.name,
    agentId: pod.metadata.labels?.[AGENT_ID_LABEL] ?? '',
    oomKilled: false,
    exitCode: undefined,
    networkMode: networkModeOf(pod),
  };
  const status = agentStatus(pod);
  const terminated = status?.state?.terminated;
  if (terminated) {
    return {
      ...base,
      state: 'exited',
      exitCode: terminated.exitCode,
      oomKilled: terminated.reason === 'OOMKilled',
      startedAt: ms(terminated.startedAt),
      finishedAt: endMs(terminated.finishedAt),
      error: terminated.reason === 'ContainerCannotRun' || terminated.reason === 'StartError' ? terminated.message ?? terminated.reason : undefined,
    };
  }
  if (isPodFinished(pod)) {
    // Ended before the container ran (activeDeadlineSeconds, eviction, node lost).
    const reason = pod.status?.reason ?? pod.status?.phase ?? 'Failed';
    return {
      ...base,
      state: 'exited',
      exitCode: pod.status?.phase === 'Succeeded' ? 0 : 137,
      error: `${reason}: ${pod.status?.message ?? 'the Pod ended before its container ran'}`,
    };
  }
  const running = status?.state?.running;
  if (running) {
    return { ...base, state: pod.metadata.deletionTimestamp ? 'removing' : 'running', startedAt: ms(running.startedAt) };
  }
  if (pod.metadata.deletionTimestamp) return { ...base, state: 'removing' };
  const waiting = status?.state?.waiting;
  if (waiting?.reason && IMAGE_REASONS.has(waiting.reason)) {
    const image = status?.image ?? pod.spec.containers[0]?.image ?? '';
    return { ...base, state: 'created', error: `ImageNotFound: image "${image}" cannot be pulled (${waiting.reason}: ${waiting.message ?? 'no detail'})` };
  }
  if (waiting?.reason && CONFIG_REASONS.has(waiting.reason)) {
    return { ...base, state: 'created', error: `${waiting.reason}: ${waiting.message ?? 'no detail'}` };
  }
  return { ...base, state: 'created' };
}

/**
 * The Runtime events one observed change of a Pod means (pure): `prev` undefined is a
 * new Pod, `next` undefined a deleted one. Start and die are keyed on the container's
 * own timestamps, so a repeated MODIFIED (or a relist after 410 Gone) of an unchanged
 * state yields nothing.
 */
export function podTransitionEvents(prev: KubePod | undefined, next: KubePod | undefined, nowMs: number): RuntimeEvent[] {
  const pod = next ?? prev;
  if (!pod) return [];
  const containerId = pod.metadata.name;
  const agentId = pod.metadata.labels?.[AGENT_ID_LABEL] ?? '';
  const event = (action: RuntimeEvent['action'], time: number | undefined): RuntimeEvent => ({ action, containerId, agentId, time: time ?? nowMs });

  // A different uid under the same name is a replacement Pod: compare against nothing.
  const before = prev && next && prev.metadata.uid !== next.metadata.uid ? undefined : prev;
  const out: RuntimeEvent[] = [];
  if (!next) {
    const was = observedFromPod(prev!);
    if (was.state === 'running' || was.state === 'removing') out.push(event('die', nowMs));
    out.push(event('destroy', nowMs));
    return out;
  }
  const now = observedFromPod(next);
  const then = before ? observedFromPod(before) : undefined;
  if (!before && !prev) out.push(event('create', ms(next.metadata.creationTimestamp)));
  const startedNow = now.startedAt !== undefined && (now.state === 'running' || now.state === 'exited' || now.state === 'removing');
  if (startedNow && now.startedAt !== then?.startedAt) {
    out.push(event('start', now.startedAt));
  }
  if (now.state === 'exited' && then?.state !== 'exited') {
    if (now.oomKilled) out.push(event('oom', now.finishedAt));
    out.push(event('die', now.finishedAt));
  }
  return out;
}
