import type { V1Affinity, V1NodeSelectorTerm, V1Pod, V1Toleration } from '@kubernetes/client-node';
import { formatCpu } from '../../domain/quantity.js';
import type { NodeSelectorTerm } from '../../domain/affinity.js';
import { AGENT_ID_LABEL, INSTANCE_LABEL, MANAGED_LABEL, TENANT_LABEL, containerName, type ContainerPlacement, type ContainerSpec } from '../runtime.js';
import {
  AGENT_CONTAINER_NAME,
  EGRESS_ALLOWLIST,
  EGRESS_LABEL,
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
    // A user label Kubernetes would reject is dropped rather than failing the create.
    if (isValidLabelKey(key) && isValidLabelValue(value)) labels[key] = value;
  }
  // Platform labels last: a user label cannot impersonate another agent or tenant.
  labels[AGENT_ID_LABEL] = spec.agentId;
  labels[TENANT_LABEL] = spec.tenantId;
  labels[MANAGED_LABEL] = 'true';
  if (options.instanceId) labels[INSTANCE_LABEL] = options.instanceId;
  if (spec.labels[EGRESS_LABEL] === EGRESS_ALLOWLIST) labels[EGRESS_LABEL] = EGRESS_ALLOWLIST;
  else delete labels[EGRESS_LABEL];

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
  if (spec.timeoutSeconds !== undefined && spec.timeoutSeconds > 0) podSpec.activeDeadlineSeconds = Math.ceil(spec.timeoutSeconds);
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
