import { describe, expect, it } from 'vitest';
import { validateKubeObject } from '../../../test/kubernetes/validate-kube-object.js';
import { AGENT_ID_LABEL, INSTANCE_LABEL, MANAGED_LABEL, TENANT_LABEL, type ContainerPlacement, type ContainerSpec } from '../runtime.js';
import { EGRESS_LABEL, START_GATE, TIMEOUT_ANNOTATION, tenantNamespace } from './kube-names.js';
import { buildPodManifest, DEADLINE_SLACK_SECONDS, DEFAULT_START_TIMEOUT_SECONDS, deadlineMarginSecondsOf, placementFromPod, podDeadlineSeconds } from './pod-manifest.js';

const spec = (overrides: Partial<ContainerSpec> = {}): ContainerSpec => ({
  agentId: 'a1b2',
  tenantId: 'acme',
  name: 'worker',
  image: 'agent-samples/simple-python:latest',
  command: ['python3', '-m', 'agent'],
  args: ['--fast'],
  env: { MODE: 'test' },
  cpuLimitMillicores: 1500,
  cpuRequestMillicores: 250,
  memoryLimitMiB: 512,
  pidsLimit: 128,
  tmpSizeMiB: 32,
  dataSizeMiB: 256,
  gpuDeviceIds: [],
  labels: { team: 'ml' },
  ...overrides,
});

describe('the Pod deadline margin', () => {
  it('defaults to the controller\'s start timeout plus slack, so the controller\'s DeadlineExceeded always comes first', () => {
    // The kubelet counts from the Pod's startTime; the controller from the start it records,
    // which may be as late as the end of its start timeout. Worst case for a 300 s timeout
    // and a 120 s start timeout: kubelet fires at startTime + deadline, the controller at
    // startTime + 120 + 300; the slack is what the controller has left to act.
    expect(deadlineMarginSecondsOf({})).toBe(DEFAULT_START_TIMEOUT_SECONDS + DEADLINE_SLACK_SECONDS);
    expect(DEFAULT_START_TIMEOUT_SECONDS).toBe(120);
    expect(DEADLINE_SLACK_SECONDS).toBe(60);
    expect(deadlineMarginSecondsOf({ startTimeoutSeconds: 600 })).toBe(660);
    expect(deadlineMarginSecondsOf({ startTimeoutSeconds: 0.5 })).toBe(61);
    // An explicit margin wins over the computed one; negative is none.
    expect(deadlineMarginSecondsOf({ startTimeoutSeconds: 600, deadlineMarginSeconds: 30 })).toBe(30);
    expect(deadlineMarginSecondsOf({ deadlineMarginSeconds: -5 })).toBe(0);
    for (const startTimeoutSeconds of [1, 120, 900]) {
      const timeoutSeconds = 300;
      const deadline = podDeadlineSeconds(timeoutSeconds, { startTimeoutSeconds })!;
      expect(deadline - (startTimeoutSeconds + timeoutSeconds)).toBe(DEADLINE_SLACK_SECONDS);
      expect(buildPodManifest(spec({ timeoutSeconds }), { startTimeoutSeconds }).spec!.activeDeadlineSeconds).toBe(deadline);
    }
    expect(podDeadlineSeconds(undefined, {})).toBeUndefined();
    expect(podDeadlineSeconds(0, {})).toBeUndefined();
  });
});

describe('buildPodManifest', () => {
  it('builds a schema-valid Pod named after the agent in the tenant namespace', () => {
    const pod = buildPodManifest(spec());
    validateKubeObject(pod);
    expect(pod.metadata).toMatchObject({ name: 'ap-a1b2', namespace: 'ap-acme' });
    expect(pod.metadata!.labels).toEqual({ team: 'ml', [AGENT_ID_LABEL]: 'a1b2', [TENANT_LABEL]: 'acme', [MANAGED_LABEL]: 'true' });
  });

  it('applies the restricted security context, read-only root and no cluster credentials', () => {
    const pod = buildPodManifest(spec());
    const podSpec = pod.spec!;
    expect(podSpec.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(podSpec.containers[0]!.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(podSpec.automountServiceAccountToken).toBe(false);
    expect(podSpec.enableServiceLinks).toBe(false);
    expect(podSpec.restartPolicy).toBe('Never');
    expect(podSpec.containers[0]!.imagePullPolicy).toBe('IfNotPresent');
  });

  it('maps resources to requests and limits, GPUs to nvidia.com/gpu limits', () => {
    const plain = buildPodManifest(spec()).spec!.containers[0]!.resources;
    expect(plain).toEqual({ limits: { cpu: '1500m', memory: '512Mi' }, requests: { cpu: '250m', memory: '512Mi' } });
    const gpu = buildPodManifest(spec({ gpuDeviceIds: ['0', '1'] }));
    validateKubeObject(gpu);
    expect(gpu.spec!.containers[0]!.resources!.limits).toEqual({ cpu: '1500m', memory: '512Mi', 'nvidia.com/gpu': '2' });
  });

  it('mounts emptyDir /tmp (memory) and /data with size limits', () => {
    const pod = buildPodManifest(spec());
    expect(pod.spec!.volumes).toEqual([
      { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '32Mi' } },
      { name: 'data', emptyDir: { sizeLimit: '256Mi' } },
    ]);
    expect(pod.spec!.containers[0]!.volumeMounts!.map((m) => m.mountPath)).toEqual(['/tmp', '/data']);
  });

  it('maps command and args like Kubernetes does, omitting empty ones', () => {
    const c = buildPodManifest(spec()).spec!.containers[0]!;
    expect(c.command).toEqual(['python3', '-m', 'agent']);
    expect(c.args).toEqual(['--fast']);
    const bare = buildPodManifest(spec({ command: [], args: [], env: {} })).spec!.containers[0]!;
    expect(bare.command).toBeUndefined();
    expect(bare.args).toBeUndefined();
    expect(bare.env).toBeUndefined();
  });

  it('holds a created Pod with the start gate unless told otherwise', () => {
    expect(buildPodManifest(spec()).spec!.schedulingGates).toEqual([{ name: START_GATE }]);
    expect(buildPodManifest(spec(), { held: false }).spec!.schedulingGates).toBeUndefined();
  });

  it('asks for RuntimeClass gvisor, a deadline from timeoutSeconds (plus the backstop margin), and a scheduler name', () => {
    const pod = buildPodManifest(spec({ runtimeClass: 'gvisor', timeoutSeconds: 90 }), { schedulerName: 'agent-platform', instanceId: 'inst1' });
    validateKubeObject(pod);
    expect(pod.spec!.runtimeClassName).toBe('gvisor');
    // The default start timeout (120 s) plus 60 s past the timeout: the controller stops the agent first (DeadlineExceeded, no restart).
    expect(pod.spec!.activeDeadlineSeconds).toBe(90 + 120 + 60);
    expect(buildPodManifest(spec({ timeoutSeconds: 90 }), { deadlineMarginSeconds: 0 }).spec!.activeDeadlineSeconds).toBe(90);
    expect(buildPodManifest(spec()).spec!.activeDeadlineSeconds).toBeUndefined();
    expect(pod.metadata!.annotations![TIMEOUT_ANNOTATION]).toBe('90');
    expect(pod.spec!.schedulerName).toBe('agent-platform');
    expect(pod.metadata!.labels![INSTANCE_LABEL]).toBe('inst1');
    expect(buildPodManifest(spec()).spec!.runtimeClassName).toBeUndefined();
  });

  it('translates nodeSelector, tolerations and node affinity, and reads them back for binding mode', () => {
    const placement: Required<ContainerPlacement> = {
      nodeSelector: { pool: 'gpu' },
      tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
      affinity: {
        required: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] }],
        preferred: [{ weight: 10, term: { matchExpressions: [{ key: 'ssd', operator: 'Exists' }] } }],
      },
    };
    const pod = buildPodManifest(spec({ placement }));
    expect(placementFromPod(pod.spec as unknown as Record<string, unknown>)).toEqual(placement);
    expect(placementFromPod({})).toEqual({ nodeSelector: {}, tolerations: [], affinity: {} });
    validateKubeObject(pod);
    expect(pod.spec!.nodeSelector).toEqual({ pool: 'gpu' });
    expect(pod.spec!.tolerations).toEqual([{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(pod.spec!.affinity!.nodeAffinity!.requiredDuringSchedulingIgnoredDuringExecution!.nodeSelectorTerms).toEqual([
      { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] },
    ]);
    expect(pod.spec!.affinity!.nodeAffinity!.preferredDuringSchedulingIgnoredDuringExecution).toEqual([
      { weight: 10, preference: { matchExpressions: [{ key: 'ssd', operator: 'Exists' }] } },
    ]);
  });

  it('keeps platform labels authoritative and drops reserved labels and labels Kubernetes would reject', () => {
    const pod = buildPodManifest(
      spec({ labels: { [AGENT_ID_LABEL]: 'someone-else', 'bad key!': 'x', ok: 'a'.repeat(64), [EGRESS_LABEL]: 'allowlist', [INSTANCE_LABEL]: 'other', 'io.agent-platform.x': 'y', team: 'ml' } }),
    );
    expect(pod.metadata!.labels).toEqual({ team: 'ml', [AGENT_ID_LABEL]: 'a1b2', [TENANT_LABEL]: 'acme', [MANAGED_LABEL]: 'true' });
    validateKubeObject(pod);
  });

  it('takes the egress label from the network mode only, never from user labels', () => {
    // A user label cannot put a network-none agent under the DNS + proxy egress policy.
    expect(buildPodManifest(spec({ egress: 'none', labels: { [EGRESS_LABEL]: 'allowlist' } })).metadata!.labels).not.toHaveProperty(EGRESS_LABEL);
    expect(buildPodManifest(spec({ labels: { [EGRESS_LABEL]: 'open' } })).metadata!.labels).not.toHaveProperty(EGRESS_LABEL);
    expect(buildPodManifest(spec({ egress: 'allowlist' })).metadata!.labels![EGRESS_LABEL]).toBe('allowlist');
    expect(buildPodManifest(spec({ egress: 'open', labels: { [EGRESS_LABEL]: 'allowlist' } })).metadata!.labels![EGRESS_LABEL]).toBe('open');
  });

  it('derives a DNS-1123 namespace from any tenant id', () => {
    expect(tenantNamespace('Acme_Corp')).toBe('ap-acme-corp');
    expect(tenantNamespace('x'.repeat(100))).toHaveLength(63);
    expect(tenantNamespace('a'.repeat(60) + '---b')).toBe(`ap-${'a'.repeat(60)}`);
  });

  it('fails schema validation for a broken Pod (the validator is not a no-op)', () => {
    const pod = buildPodManifest(spec());
    (pod.spec!.containers[0]!.resources!.limits as Record<string, unknown>).cpu = { bogus: true };
    expect(() => validateKubeObject(pod)).toThrow(/schema/);
  });
});
