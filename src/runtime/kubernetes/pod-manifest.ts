import type { V1Affinity, V1NodeSelectorTerm, V1Pod, V1Toleration } from '@kubernetes/client-node';
import { formatCpu } from '../../domain/quantity.js';
import type { NodeSelectorTerm } from '../../domain/affinity.js';
import { AGENT_ID_LABEL, INSTANCE_LABEL, MANAGED_LABEL, RESERVED_LABEL_PREFIX, TENANT_LABEL, containerName, type ContainerPlacement, type ContainerSpec } from '../runtime.js';
import {
  AGENT_CONTAINER_NAME,
  EGRESS_ALLOWLIST,
  EGRESS_LABEL,
  EGRESS_OPEN,
  PIDS_LIMIT_ANNOTATION,
  START_GATE,
  TIMEOUT_ANNOTATION,
  isValidLabelKey,
  isValidLabelValue,
  tenantNamespace,
} from './kube-names.js';

/** How the Kubernetes adapter turns a ContainerSpec into a Pod; all optional for callers. */
export interface PodManifestOptions {
  /**
   * Namespace of the Pod.
   * @default tenantNamespace(spec.tenantId), i.e. "ap-<tenant>"
   */
  namespace?: string | undefined;
  /**
   * Created but not started: the Pod carries the START_GATE scheduling gate, so it is
   * neither scheduled nor run until the gate is removed.
   * @default true
   */
  held?: boolean | undefined;
  /**
   * `spec.schedulerName`. Set it to have the platform bind Pods itself (Binding
   * subresource); undefined leaves kube-scheduler in charge.
   * @default undefined
   */
  schedulerName?: string | undefined;
  /**
   * SIGTERM-to-SIGKILL time for every stop of the Pod (deletion or deadline). Fixed at
   * creation: Kubernetes does not let a running Pod change it.
   * @default 10
   */
  terminationGraceSeconds?: number | undefined;
  /**
   * "IfNotPresent" on clusters; "Never" for locally imported images (podman kube play).
   * @default "IfNotPresent"
   */
  imagePullPolicy?: 'IfNotPresent' | 'Never' | 'Always' | undefined;
  /** @default 1000 */
  runAsUid?: number | undefined;
  /** @default 1000 */
  runAsGid?: number | undefined;
  /**
   * emptyDir medium of /tmp. "Memory" (tmpfs) matches the Docker adapter and counts
   * against the memory limit; "" puts it on the node's disk (ephemeral storage).
   * @default "Memory"
   */
  tmpMedium?: 'Memory' | '' | undefined;
  /** Platform installation id, written as a label. @default undefined */
  instanceId?: string | undefined;
  /**
   * Added to `timeoutSeconds` for the Pod's activeDeadlineSeconds. The controller stops an
   * agent at its timeout itself (Failed, DeadlineExceeded, no restart); the kubelet's
   * deadline is the backstop for when no control plane is up. The kubelet counts from the
   * Pod's startTime, before the image pull, while the controller counts from the start it
   * records, which may come as late as the end of its start timeout (Starting lasts at most
   * that long). With a smaller margin the kubelet could fire first and the agent would end as
   * an ordinary exit, restarted under OnFailure/Always. Costs: with the platform down, an
   * agent runs up to this much longer than its timeout.
   * @default startTimeoutSeconds + DEADLINE_SLACK_SECONDS (180 with the defaults)
   */
  deadlineMarginSeconds?: number | undefined;
  /**
   * The controller's start timeout (AGENT_PLATFORM_START_TIMEOUT_MS, in seconds): the
   * longest a Pod may have been admitted before the controller records its start. Only
   * read for the default of deadlineMarginSeconds.
   * @default 120 (the default of AGENT_PLATFORM_START_TIMEOUT_MS)
   */
  startTimeoutSeconds?: number | undefined;
}

/** Default start timeout of the controller, in seconds (AGENT_PLATFORM_START_TIMEOUT_MS=120000). */
export const DEFAULT_START_TIMEOUT_SECONDS = 120;
/**
 * Margin past the start timeout: the controller acts on a deadline at its next reconcile and
 * then needs a stop; a minute covers a slow reconcile queue and the stop's API calls.
 */
export const DEADLINE_SLACK_SECONDS = 60;

/** The margin actually used: deadlineMarginSeconds, else the start timeout plus the slack. */
export function deadlineMarginSecondsOf(options: Pick<PodManifestOptions, 'deadlineMarginSeconds' | 'startTimeoutSeconds'>): number {
  if (options.deadlineMarginSeconds !== undefined) return Math.max(0, Math.ceil(options.deadlineMarginSeconds));
  return Math.ceil(Math.max(0, options.startTimeoutSeconds ?? DEFAULT_START_TIMEOUT_SECONDS)) + DEADLINE_SLACK_SECONDS;
}

/** activeDeadlineSeconds for a timeout (undefined: none); also used when a restart makes a new Pod. */
export function podDeadlineSeconds(timeoutSeconds: number | undefined, options: Pick<PodManifestOptions, 'deadlineMarginSeconds' | 'startTimeoutSeconds'> = {}): number | undefined {
  if (timeoutSeconds === undefined || !Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) return undefined;
  return Math.ceil(timeoutSeconds) + deadlineMarginSecondsOf(options);
}

const MIB = 'Mi';

/**
 * Builds the Pod for one agent (pure). The Pod is named `containerName(agentId)`, so a
 * retried create meets 409 AlreadyExists instead of making a second Pod.
 *
 * Security context: the Pod Security Standard "restricted" profile plus a read-only
 * root filesystem, a fixed uid/gid 1000, no service-account token and no service
 * environment variables (an agent learns nothing about the cluster it runs in).
 *
 * restartPolicy is Never: the platform's controllers restart agents (with backoff,
 * accounting and events), as they do on Docker. A Pod that has ended cannot run again,
 * so the runtime replaces it with a new Pod of the same name (see KubernetesRuntime.start).
 *
 * Not expressible in a Pod: the pids limit (a kubelet setting, `podPidsLimit`), recorded
 * as an annotation; and which GPU devices (the device plugin picks them; only the count
 * `nvidia.com/gpu` is requested).
 */
export function buildPodManifest(spec: ContainerSpec, options: PodManifestOptions = {}): V1Pod {
  const uid = options.runAsUid ?? 1000;
  const gid = options.runAsGid ?? 1000;
  const namespace = options.namespace ?? tenantNamespace(spec.tenantId);
  const held = options.held ?? true;

  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(spec.labels)) {
    // A user label Kubernetes would reject is dropped rather than failing the create; one
    // under the platform's prefix too (the API refuses them; older records may hold some):
    // the NetworkPolicies select Pods by EGRESS_LABEL, so a user label must never set it.
    if (key.startsWith(RESERVED_LABEL_PREFIX)) continue;
    if (isValidLabelKey(key) && isValidLabelValue(value)) labels[key] = value;
  }
  labels[AGENT_ID_LABEL] = spec.agentId;
  labels[TENANT_LABEL] = spec.tenantId;
  labels[MANAGED_LABEL] = 'true';
  if (options.instanceId) labels[INSTANCE_LABEL] = options.instanceId;
  // From the spec's network mode only; `none` has no label, so default-deny holds it.
  if (spec.egress === 'allowlist') labels[EGRESS_LABEL] = EGRESS_ALLOWLIST;
  else if (spec.egress === 'open') labels[EGRESS_LABEL] = EGRESS_OPEN;

  const annotations: Record<string, string> = { [PIDS_LIMIT_ANNOTATION]: String(spec.pidsLimit) };
  if (spec.timeoutSeconds !== undefined) annotations[TIMEOUT_ANNOTATION] = String(spec.timeoutSeconds);

  const limits: Record<string, string> = {
    cpu: formatCpu(spec.cpuLimitMillicores),
    memory: `${spec.memoryLimitMiB}${MIB}`,
  };
  // Extended resources are requested in limits only (requests default to limits).
  if (spec.gpuDeviceIds.length > 0) limits['nvidia.com/gpu'] = String(spec.gpuDeviceIds.length);
  const requests: Record<string, string> = {
    cpu: formatCpu(Math.min(spec.cpuRequestMillicores, spec.cpuLimitMillicores)),
    // Memory request = limit: the scheduler reserves what the agent may use, so a node
    // is never overcommitted into OOM kills of other tenants' agents.
    memory: `${spec.memoryLimitMiB}${MIB}`,
  };

  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: containerName(spec.agentId), namespace, labels, annotations },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: options.terminationGraceSeconds ?? 10,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: uid,
        runAsGroup: gid,
        fsGroup: gid,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: AGENT_CONTAINER_NAME,
          image: spec.image,
          imagePullPolicy: options.imagePullPolicy ?? 'IfNotPresent',
          env: Object.entries(spec.env).map(([name, value]) => ({ name, value })),
          resources: { limits, requests },
          securityContext: {
            runAsNonRoot: true,
            runAsUser: uid,
            runAsGroup: gid,
            allowPrivilegeEscalation: false,
            privileged: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          },
          volumeMounts: [
            { name: 'tmp', mountPath: '/tmp' },
            { name: 'data', mountPath: '/data' },
          ],
          stdin: false,
          tty: false,
        },
      ],
      volumes: [
        { name: 'tmp', emptyDir: { medium: options.tmpMedium ?? 'Memory', sizeLimit: `${spec.tmpSizeMiB}${MIB}` } },
        { name: 'data', emptyDir: { sizeLimit: `${spec.dataSizeMiB}${MIB}` } },
      ],
    },
  };
  const podSpec = pod.spec!;
  const container = podSpec.containers[0]!;
  // Kubernetes semantics, as on Docker: command replaces ENTRYPOINT, args replaces CMD.
  if (spec.command.length > 0) container.command = [...spec.command];
  if (spec.args.length > 0) container.args = [...spec.args];
  if (spec.workingDir) container.workingDir = spec.workingDir;
  if (container.env!.length === 0) delete container.env;

  if (held) podSpec.schedulingGates = [{ name: START_GATE }];
  if (options.schedulerName) podSpec.schedulerName = options.schedulerName;
  if (spec.runtimeClass === 'gvisor') podSpec.runtimeClassName = 'gvisor';
  const deadline = podDeadlineSeconds(spec.timeoutSeconds, options);
  if (deadline !== undefined) podSpec.activeDeadlineSeconds = deadline;
  applyPlacement(pod, spec.placement);
  return pod;
}

function applyPlacement(pod: V1Pod, placement: ContainerPlacement | undefined): void {
  if (!placement) return;
  const podSpec = pod.spec!;
  if (placement.nodeSelector && Object.keys(placement.nodeSelector).length > 0) podSpec.nodeSelector = { ...placement.nodeSelector };
  if (placement.tolerations && placement.tolerations.length > 0) {
    podSpec.tolerations = placement.tolerations.map((t): V1Toleration => {
      const out: V1Toleration = {};
      if (t.key !== undefined) out.key = t.key;
      if (t.operator !== undefined) out.operator = t.operator;
      if (t.value !== undefined) out.value = t.value;
      if (t.effect !== undefined) out.effect = t.effect;
      return out;
    });
  }
  const required = placement.affinity?.required ?? [];
  const preferred = placement.affinity?.preferred ?? [];
  if (required.length === 0 && preferred.length === 0) return;
  const nodeAffinity: NonNullable<V1Affinity['nodeAffinity']> = {};
  if (required.length > 0) nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution = { nodeSelectorTerms: required.map(toKubeTerm) };
  if (preferred.length > 0) {
    nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution = preferred.map((p) => ({ weight: p.weight, preference: toKubeTerm(p.term) }));
  }
  podSpec.affinity = { nodeAffinity };
}

const toKubeTerm = (term: NodeSelectorTerm): V1NodeSelectorTerm => ({
  matchExpressions: term.matchExpressions.map((r) => {
    const out: { key: string; operator: string; values?: string[] } = { key: r.key, operator: r.operator };
    if (r.operator === 'In' || r.operator === 'NotIn') out.values = [...(r.values ?? [])];
    return out;
  }),
});

/**
 * The placement a Pod asks for, read back from its spec (the inverse of applyPlacement):
 * binding mode hands it to the platform's scheduler. Only what applyPlacement writes is
 * read; matchFields and the Gt/Lt operators, which the platform never writes, are skipped.
 */
export function placementFromPod(spec: Readonly<Record<string, unknown>>): Required<ContainerPlacement> {
  const nodeSelector = (spec.nodeSelector as Record<string, string> | undefined) ?? {};
  const tolerations = ((spec.tolerations as V1Toleration[] | undefined) ?? []).map((t) => {
    const out: NonNullable<ContainerPlacement['tolerations']>[number] = {};
    if (t.key !== undefined) out.key = t.key;
    if (t.operator === 'Equal' || t.operator === 'Exists') out.operator = t.operator;
    if (t.value !== undefined) out.value = t.value;
    if (t.effect === 'NoSchedule' || t.effect === 'PreferNoSchedule' || t.effect === 'NoExecute') out.effect = t.effect;
    return out;
  });
  const nodeAffinity = (spec.affinity as V1Affinity | undefined)?.nodeAffinity;
  const fromKubeTerm = (term: V1NodeSelectorTerm): NodeSelectorTerm => ({
    matchExpressions: (term.matchExpressions ?? [])
      .filter((r): r is typeof r & { operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' } => ['In', 'NotIn', 'Exists', 'DoesNotExist'].includes(r.operator))
      .map((r) => (r.values !== undefined ? { key: r.key, operator: r.operator, values: [...r.values] } : { key: r.key, operator: r.operator })),
  });
  const required = (nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? []).map(fromKubeTerm);
  const preferred = (nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p) => ({ weight: p.weight, term: fromKubeTerm(p.preference) }));
  const affinity: NonNullable<ContainerPlacement['affinity']> = {};
  if (required.length > 0) affinity.required = required;
  if (preferred.length > 0) affinity.preferred = preferred;
  return { nodeSelector: { ...nodeSelector }, tolerations, affinity };
}
