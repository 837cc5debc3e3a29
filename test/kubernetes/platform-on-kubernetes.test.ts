import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config.js';
import { InputError } from '../../src/domain/errors.js';
import { loadNodePool, nodeIdsOf } from '../../src/nodes/node-config.js';
import { buildNodePool, leastAllocatedNode } from '../../src/nodes/node-definitions.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { KubernetesRuntime } from '../../src/runtime/kubernetes/kubernetes-runtime.js';
import { AGENT_ID_LABEL, INSTANCE_LABEL } from '../../src/runtime/runtime.js';
import { EGRESS_LABEL } from '../../src/runtime/kubernetes/kube-names.js';
import { FakeKubeApiServer } from './fake-kube-apiserver.js';
import { waitFor } from '../helpers/wait-for.js';

/**
 * The whole platform with one Kubernetes node, configured the way an operator would
 * (AGENT_PLATFORM_NODES with a kubeconfig and a context), driven only through HTTP,
 * against the FAKE API server (test/kubernetes/fake-kube-apiserver.ts: no real
 * kube-apiserver runs on these machines). Real SQLite, real HTTPS to the fake.
 */

const IMAGE = 'agent-platform/busybox:latest';

interface AgentJson {
  id: string;
  status: { phase: string; reason?: string; node?: string; containerId?: string; exitCode?: number };
}
interface NodeJson {
  id: string;
  driver: string;
  simulated: boolean;
  ready: boolean;
  capacity: { cpuMillicores: number; memoryMiB: number; maxAgents: number; gpus: { id: string; model: string; memoryMiB?: number }[] };
  info?: { runtimeVersion: string; isolationClasses: string[] };
}

/** One platform on a fake cluster; `nodes` entries get `kubeconfig` and `context` filled in. */
async function bootOnFake(
  fakeOptions: Parameters<typeof FakeKubeApiServer.start>[0],
  entry: Record<string, unknown>,
): Promise<{
  fake: FakeKubeApiServer;
  platform: Platform;
  api: <T>(method: string, path: string, body?: unknown) => Promise<{ status: number; json: T; text: string }>;
  close(): Promise<void>;
}> {
  const fake = await FakeKubeApiServer.start(fakeOptions);
  const dir = mkdtempSync(join(tmpdir(), 'ap-k8s-platform-'));
  const kubeconfig = fake.writeKubeconfig(dir, 'fake-ctx');
  const token = `k8s_${randomBytes(16).toString('hex')}`;
  const config = loadConfig({
    AGENT_PLATFORM_DATA_DIR: join(dir, 'data'),
    AGENT_PLATFORM_ADMIN_TOKEN: token,
    AGENT_PLATFORM_PORT: '0',
    AGENT_PLATFORM_LOG_LEVEL: 'silent',
    AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
    AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: '500',
    AGENT_PLATFORM_STOP_GRACE_MS: '1000',
    AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'kubernetes', kubeconfig, context: 'fake-ctx', ...entry }]),
  });
  let platform: Platform | undefined;
  try {
    platform = await buildPlatform(config);
    const baseUrl = (await platform.start()).replace('[::1]', '127.0.0.1');
    const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T; text: string }> => {
      const res = await fetch(baseUrl + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      return { status: res.status, json: json as T, text };
    };
    const p = platform;
    return {
      fake,
      platform: p,
      api,
      async close() {
        try {
          await p.close();
        } finally {
          await fake.close();
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    await platform?.close().catch(() => undefined);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

describe('node config: kubernetes entries', () => {
  it('parses the kubernetes entry of deploy/kubernetes/base/configmap.yaml (in-cluster: no kubeconfig)', () => {
    const configMap = parseYaml(readFileSync(new URL('../../deploy/kubernetes/base/configmap.yaml', import.meta.url), 'utf8')) as { data: Record<string, string> };
    const entries = loadNodePool({ AGENT_PLATFORM_NODES: configMap.data.AGENT_PLATFORM_NODES, nodeName: 'unused' });
    expect(entries).toEqual([
      {
        driver: 'kubernetes',
        id: 'k8s',
        kubeconfigPath: undefined,
        context: undefined,
        inCluster: false,
        schedulerName: undefined,
        egressProxy: undefined,
        labels: {},
        taints: [],
        reserved: { cpuMillicores: 0, memoryMiB: 0 },
        capacityOverride: { cpuMillicores: undefined, memoryMiB: undefined },
        maxAgents: 1000,
        gpus: undefined,
      },
    ]);
  });

  it('names the node after its context, made a valid node id, and refuses kubeconfig with inCluster', () => {
    const [entry] = loadNodePool({ AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'kubernetes', context: 'arn:aws:eks:eu-west-1:123:cluster/Prod' }]), nodeName: 'x' });
    expect(nodeIdsOf(entry!)).toEqual(['k8s-arn-aws-eks-eu-west-1-123-cluster-prod']);
    expect(() => loadNodePool({ AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'kubernetes', kubeconfig: '/k', inCluster: true }]), nodeName: 'x' })).toThrow(/both kubeconfig and inCluster/);
    expect(() => loadNodePool({ AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'kubernetes' }, { driver: 'kubernetes', id: 'k8s' }]), nodeName: 'x' })).toThrow(/"k8s" appears twice/);
  });

  it('builds the runtime from the default chain ($KUBECONFIG) without a kubeconfig, from the service account with inCluster', async () => {
    const fake = await FakeKubeApiServer.start();
    const dir = mkdtempSync(join(tmpdir(), 'ap-k8s-chain-'));
    const saved = { KUBECONFIG: process.env.KUBECONFIG, host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    try {
      process.env.KUBECONFIG = fake.writeKubeconfig(dir, 'from-env');
      const viaEnv = buildNodePool(loadNodePool({ AGENT_PLATFORM_NODES: '[{"driver":"kubernetes"}]', nodeName: 'x' }));
      const runtime = viaEnv.runtimes[0] as KubernetesRuntime;
      expect(runtime).toBeInstanceOf(KubernetesRuntime);
      expect(runtime.nodeId).toBe('k8s');
      expect(runtime.client.server.origin).toBe(new URL(fake.url).origin);
      expect((await runtime.info()).cpuMillicores).toBe(4000);
      await runtime.close();

      process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
      process.env.KUBERNETES_SERVICE_PORT = '443';
      const inCluster = buildNodePool(loadNodePool({ AGENT_PLATFORM_NODES: '[{"driver":"kubernetes","id":"here","inCluster":true}]', nodeName: 'x' }));
      expect((inCluster.runtimes[0] as KubernetesRuntime).client.server.toString()).toBe('https://10.96.0.1/');
      await inCluster.runtimes[0]!.close();

      // An unknown context fails the boot, naming the node.
      expect(() => buildNodePool(loadNodePool({ AGENT_PLATFORM_NODES: '[{"driver":"kubernetes","context":"nope"}]', nodeName: 'x' }))).toThrow(InputError);
      expect(() => buildNodePool(loadNodePool({ AGENT_PLATFORM_NODES: '[{"driver":"kubernetes","context":"nope"}]', nodeName: 'x' }))).toThrow(/kubernetes node "k8s-nope".*context "nope"/);
    } finally {
      for (const [key, value] of [
        ['KUBECONFIG', saved.KUBECONFIG],
        ['KUBERNETES_SERVICE_HOST', saved.host],
        ['KUBERNETES_SERVICE_PORT', saved.port],
      ] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('binding mode: the platform scheduler over the cluster Nodes (leastAllocatedNode)', () => {
    type Snapshot = Parameters<typeof leastAllocatedNode>[1][number];
    type Request = Parameters<typeof leastAllocatedNode>[0];
    const node = (name: string, cpu: number, used: number, extra: Partial<Omit<Snapshot, 'allocatable' | 'requested'>> & { gpu?: number; gpuUsed?: number; pods?: number; podsUsed?: number } = {}): Snapshot => ({
      name,
      labels: extra.labels ?? {},
      taints: extra.taints ?? [],
      ready: extra.ready ?? true,
      unschedulable: extra.unschedulable ?? false,
      allocatable: { cpuMillicores: cpu, memoryMiB: 4096, gpu: extra.gpu ?? 0, pods: extra.pods ?? 110 },
      requested: { cpuMillicores: used, memoryMiB: 0, gpu: extra.gpuUsed ?? 0, pods: extra.podsUsed ?? 0 },
    });
    const request: Request = { podName: 'p', namespace: 'ap-t', agentId: 'a', cpuMillicores: 500, memoryMiB: 64, gpu: 0, nodeSelector: {}, tolerations: [], affinity: {} };

    it('picks the Ready, schedulable, matching node with the most room', () => {
      const nodes = [node('a', 4000, 3000), node('b', 2000, 0), node('c', 8000, 0, { ready: false }), node('d', 8000, 0, { unschedulable: true })];
      expect(leastAllocatedNode(request, nodes)).toBe('b');
      expect(leastAllocatedNode({ ...request, nodeSelector: { zone: 'x' } }, nodes)).toBeUndefined();
      expect(leastAllocatedNode({ ...request, cpuMillicores: 2500 }, nodes)).toBeUndefined();
      expect(leastAllocatedNode(request, [])).toBeUndefined();
    });

    it('never binds onto a NoSchedule or NoExecute taint the Pod does not tolerate; PreferNoSchedule only costs score', () => {
      const tainted = node('big-tainted', 16000, 0, { taints: [{ key: 'dedicated', value: 'ml', effect: 'NoSchedule' }] });
      const evicting = node('big-evicting', 16000, 0, { taints: [{ key: 'maintenance', effect: 'NoExecute' }] });
      const small = node('small', 2000, 0);
      expect(leastAllocatedNode(request, [tainted, evicting, small])).toBe('small');
      expect(leastAllocatedNode(request, [tainted, evicting])).toBeUndefined();
      const tolerating: Request = { ...request, tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'NoSchedule' }] };
      expect(leastAllocatedNode(tolerating, [tainted, evicting, small])).toBe('big-tainted');
      expect(leastAllocatedNode({ ...request, tolerations: [{ operator: 'Exists' }] }, [evicting, small])).toBe('big-evicting');
      // A soft taint: avoided when an equal node without it exists, used when it is the only one.
      const soft = node('a-soft', 2000, 0, { taints: [{ key: 'spot', effect: 'PreferNoSchedule' }] });
      expect(leastAllocatedNode(request, [soft, node('b-plain', 2000, 0)])).toBe('b-plain');
      expect(leastAllocatedNode(request, [soft])).toBe('a-soft');
    });

    it('fits GPUs against allocatable nvidia.com/gpu minus what bound Pods hold', () => {
      const nodes = [node('cpu-only', 16000, 0), node('gpu-busy', 8000, 0, { gpu: 4, gpuUsed: 3 }), node('gpu-free', 4000, 0, { gpu: 2 })];
      expect(leastAllocatedNode({ ...request, gpu: 2 }, nodes)).toBe('gpu-free');
      expect(leastAllocatedNode({ ...request, gpu: 1 }, nodes)).toBe('gpu-busy');
      expect(leastAllocatedNode({ ...request, gpu: 3 }, nodes)).toBeUndefined();
      expect(leastAllocatedNode(request, nodes)).toBe('cpu-only');
    });

    it('respects required node affinity, preferred affinity and the allocatable pod count', () => {
      const nodes = [node('x-full', 16000, 0, { labels: { zone: 'x' }, pods: 10, podsUsed: 10 }), node('x-1', 2000, 0, { labels: { zone: 'x' } }), node('y-1', 8000, 0, { labels: { zone: 'y', ssd: 'true' } })];
      expect(leastAllocatedNode(request, nodes)).toBe('y-1');
      expect(leastAllocatedNode({ ...request, affinity: { required: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['x'] }] }] } }, nodes)).toBe('x-1');
      expect(leastAllocatedNode({ ...request, affinity: { required: [{ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['x', 'y'] }] }] } }, nodes)).toBeUndefined();
      const equal = [node('p-1', 4000, 0), node('p-2', 4000, 0, { labels: { ssd: 'true' } })];
      expect(leastAllocatedNode({ ...request, affinity: { preferred: [{ weight: 50, term: { matchExpressions: [{ key: 'ssd', operator: 'Exists' }] } }] } }, equal)).toBe('p-2');
      expect(leastAllocatedNode(request, [node('only', 16000, 0, { pods: 3, podsUsed: 3 })])).toBeUndefined();
    });
  });
});

describe.sequential('the platform with a Kubernetes node (fake API server)', () => {
  let env: Awaited<ReturnType<typeof bootOnFake>>;
  const NODE_ID = 'k8s-fake-ctx';

  beforeAll(async () => {
    env = await bootOnFake(
      {
        bookmarkIntervalMs: 200,
        nodes: [
          { name: 'kn-1', cpu: '4', memory: '8Gi', gpu: 2, labels: { 'nvidia.com/gpu.product': 'A100', 'nvidia.com/gpu.memory': '40960' } },
          { name: 'kn-2', cpu: '2500m', memory: '4Gi' },
          // Not Ready: its allocatable (GPUs too) must not count.
          { name: 'kn-3', cpu: '16', memory: '64Gi', gpu: 4, ready: false },
        ],
      },
      {},
    );
  }, 30_000);
  afterAll(async () => {
    await env?.close();
  });

  const agent = async (id: string): Promise<AgentJson> => {
    const res = await env.api<AgentJson>('GET', `/api/v1/agents/${id}`);
    expect(res.status, res.text).toBe(200);
    return res.json;
  };

  it('lists the cluster as one Ready node with the Ready Nodes\' allocatable as capacity', async () => {
    const node = await waitFor('the kubernetes node to be Ready', async () => {
      const res = await env.api<{ items: NodeJson[] }>('GET', '/api/v1/nodes');
      expect(res.status).toBe(200);
      const n = res.json.items.find((i) => i.id === NODE_ID);
      return n?.ready ? n : undefined;
    });
    const all = (await env.api<{ items: NodeJson[] }>('GET', '/api/v1/nodes')).json.items;
    expect(all.map((n) => n.id)).toEqual([NODE_ID]);
    expect(node.driver).toBe('kubernetes');
    expect(node.simulated).toBe(false);
    expect(node.capacity).toMatchObject({ cpuMillicores: 6500, memoryMiB: 12288, maxAgents: 1000 });
    // GPUs from the Ready Nodes' allocatable nvidia.com/gpu (no gpus configured on the entry).
    expect(node.capacity.gpus).toEqual([
      { id: 'kn-1/0', model: 'A100', memoryMiB: 40960 },
      { id: 'kn-1/1', model: 'A100', memoryMiB: 40960 },
    ]);
    expect(node.info?.runtimeVersion).toMatch(/^kubernetes /);
    expect(node.info?.isolationClasses).toEqual(['runc', 'gvisor']);
  });

  it('mirrors the tenant quota into namespace ap-default on its first agent, and runs it to Succeeded with its logs', async () => {
    // Partial quota: the unlimited GPU count must not become a GPU limit of 0.
    const patched = await env.api('PATCH', '/api/v1/tenants/default', { quota: { cpu: '3', memory: '6Gi', running: 7 } });
    expect(patched.status, patched.text).toBe(200);
    expect(env.fake.get('namespaces', undefined, 'ap-default')).toBeUndefined();

    const created = await env.api<AgentJson>('POST', '/api/v1/agents', {
      name: 'hello',
      image: IMAGE,
      command: ['sh', '-c', 'echo hello; sleep 1; exit 0'],
      restartPolicy: 'Never',
      resources: { cpu: '250m', memory: '64Mi' },
    });
    expect(created.status, created.text).toBe(201);
    const id = created.json.id;

    const phases: string[] = [];
    const done = await waitFor('Succeeded', async () => {
      const a = await agent(id);
      if (phases.at(-1) !== a.status.phase) phases.push(a.status.phase);
      return a.status.phase === 'Succeeded' ? a : undefined;
    });
    expect(phases).toContain('Running');
    expect(done.status.exitCode).toBe(0);
    expect(done.status.node).toBe(NODE_ID);
    const podName = done.status.containerId!;
    expect(podName).toBe(`ap-${id}`);

    const logs = await env.api<string>('GET', `/api/v1/agents/${id}/logs`);
    expect(logs.status).toBe(200);
    expect(logs.text).toBe('hello\n');

    // The Pod: tenant namespace, this installation's label, the restricted security context.
    const pod = env.fake.get('pods', 'ap-default', podName)!;
    expect(pod, 'Pod in ap-default').toBeDefined();
    expect(pod.metadata.labels[INSTANCE_LABEL]).toBe(await env.platform.store.getSetting('platform_instance_id'));
    expect(pod.spec.nodeName).toMatch(/^kn-[12]$/);
    expect(pod.spec.restartPolicy).toBe('Never');
    expect(pod.spec.automountServiceAccountToken).toBe(false);
    expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.spec.containers[0].securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 1000,
      runAsGroup: 1000,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.spec.containers[0].resources).toMatchObject({ requests: { cpu: '250m', memory: '64Mi' }, limits: { cpu: '250m', memory: '64Mi' } });

    // The namespace and the quota it mirrors.
    expect(env.fake.get('namespaces', undefined, 'ap-default')!.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    expect(env.fake.get('resourcequotas', 'ap-default', 'agent-platform-quota')!.spec.hard).toEqual({
      'requests.cpu': '3',
      'requests.memory': '6Gi',
      'limits.memory': '6Gi',
      pods: '7',
    });
    expect(env.fake.get('limitranges', 'ap-default', 'agent-platform-limits')!.spec.limits[0].max).toEqual({ cpu: '3', memory: '6Gi' });
    expect(env.fake.get('networkpolicies', 'ap-default', 'default-deny')).toBeDefined();
  });

  it('pushes a changed quota into the existing namespace at once, and removes it when the tenant has no limit left', async () => {
    // ap-default exists since the previous test's agent.
    const raised = await env.api('PATCH', '/api/v1/tenants/default', { quota: { cpu: '5', gpu: 2 } });
    expect(raised.status, raised.text).toBe(200);
    expect(env.fake.get('resourcequotas', 'ap-default', 'agent-platform-quota')!.spec.hard).toEqual({
      'requests.cpu': '5',
      'requests.memory': '6Gi',
      'limits.memory': '6Gi',
      'requests.nvidia.com/gpu': '2',
      pods: '7',
    });
    expect(env.fake.get('limitranges', 'ap-default', 'agent-platform-limits')!.spec.limits[0].max).toEqual({ cpu: '5', memory: '6Gi' });

    const cleared = await env.api('PATCH', '/api/v1/tenants/default', { quota: { cpu: null, memory: null, gpu: null, running: null } });
    expect(cleared.status, cleared.text).toBe(200);
    expect(env.fake.get('resourcequotas', 'ap-default', 'agent-platform-quota')).toBeUndefined();
    expect(env.fake.get('limitranges', 'ap-default', 'agent-platform-limits')).toBeUndefined();
    expect(env.fake.get('networkpolicies', 'ap-default', 'default-deny'), 'the rest of the namespace stays').toBeDefined();

    // A tenant whose namespace was never made gets none from a quota change.
    const tenant = await env.api('POST', '/api/v1/tenants', { id: 'quota-only' });
    expect(tenant.status, tenant.text).toBe(201);
    expect((await env.api('PATCH', '/api/v1/tenants/quota-only', { quota: { cpu: '1' } })).status).toBe(200);
    expect(env.fake.get('namespaces', undefined, 'ap-quota-only')).toBeUndefined();
  });

  it('ends a failing agent (exit 3, restartPolicy Never) Failed with its exit code', async () => {
    const created = await env.api<AgentJson>('POST', '/api/v1/agents', {
      name: 'fails',
      image: IMAGE,
      command: ['sh', '-c', 'echo oops >&2; exit 3'],
      restartPolicy: 'Never',
      resources: { cpu: '100m', memory: '32Mi' },
    });
    expect(created.status, created.text).toBe(201);
    const failed = await waitFor('Failed', async () => {
      const a = await agent(created.json.id);
      expect(a.status.phase).not.toBe('Succeeded');
      return a.status.phase === 'Failed' ? a : undefined;
    });
    expect(failed.status.exitCode).toBe(3);
    expect(env.fake.get('pods', 'ap-default', failed.status.containerId!)!.status.phase).toBe('Failed');
  });

  it('DELETE removes the Pod from the cluster and the agent from the API', async () => {
    const created = await env.api<AgentJson>('POST', '/api/v1/agents', {
      name: 'long',
      image: IMAGE,
      command: ['sh', '-c', 'sleep 300'],
      restartPolicy: 'Never',
      resources: { cpu: '100m', memory: '32Mi' },
    });
    expect(created.status, created.text).toBe(201);
    const id = created.json.id;
    const running = await waitFor('Running', async () => {
      const a = await agent(id);
      return a.status.phase === 'Running' ? a : undefined;
    });
    const podName = running.status.containerId!;
    expect(env.fake.get('pods', 'ap-default', podName)?.status.phase).toBe('Running');

    const deleted = await env.api('DELETE', `/api/v1/agents/${id}`);
    expect([200, 202], deleted.text).toContain(deleted.status);
    await waitFor('the agent to be gone', async () => ((await env.api('GET', `/api/v1/agents/${id}`)).status === 404 ? true : undefined));
    expect(env.fake.get('pods', 'ap-default', podName)).toBeUndefined();
    expect(env.fake.all('pods').map((p) => p.metadata.name)).not.toContain(podName);
  });
});

describe.sequential('the platform with a Kubernetes node in binding mode (fake API server)', () => {
  let env: Awaited<ReturnType<typeof bootOnFake>>;

  beforeAll(async () => {
    env = await bootOnFake(
      { bookmarkIntervalMs: 200, nodes: [{ name: 'small', cpu: '1', memory: '2Gi' }, { name: 'big', cpu: '8', memory: '16Gi' }] },
      { id: 'cluster-b', schedulerName: 'agent-platform', labels: { site: 'b' } },
    );
  }, 30_000);
  afterAll(async () => {
    await env?.close();
  });

  it('binds the Pod itself (schedulerName set) to the node with the most room', async () => {
    const created = await env.api<AgentJson>('POST', '/api/v1/agents', {
      name: 'bound',
      image: IMAGE,
      command: ['sh', '-c', 'echo bound; exit 0'],
      resources: { cpu: '100m', memory: '32Mi' },
    });
    expect(created.status, created.text).toBe(201);
    const done = await waitFor('Succeeded', async () => {
      const a = (await env.api<AgentJson>('GET', `/api/v1/agents/${created.json.id}`)).json;
      return a.status.phase === 'Succeeded' ? a : undefined;
    });
    expect(done.status.node).toBe('cluster-b');
    const pod = env.fake.get('pods', 'ap-default', done.status.containerId!)!;
    expect(pod.spec.schedulerName).toBe('agent-platform');
    expect(pod.spec.nodeName).toBe('big');
    expect(env.fake.requests.some((r) => r.method === 'POST' && r.path.endsWith('/binding'))).toBe(true);
    // The default tenant has no quota here: no ResourceQuota is created.
    expect(env.fake.all('resourcequotas')).toEqual([]);
    const node = (await env.api<{ items: (NodeJson & { labels: Record<string, string> })[] }>('GET', '/api/v1/nodes')).json.items[0]!;
    expect(node).toMatchObject({ id: 'cluster-b', labels: { site: 'b' }, capacity: { cpuMillicores: 9000, memoryMiB: 18432 } });
  });
});

describe.sequential('the platform with a Kubernetes node: placement, egress labels, proxy, expose (fake API server)', () => {
  let env: Awaited<ReturnType<typeof bootOnFake>>;
  const PROXY = { cidr: '10.96.12.7/32', port: 3128 };

  beforeAll(async () => {
    env = await bootOnFake(
      {
        bookmarkIntervalMs: 200,
        nodes: [
          { name: 'plain', cpu: '4', memory: '8Gi', labels: { pool: 'general', zone: 'a' } },
          { name: 'dedicated', cpu: '4', memory: '8Gi', labels: { pool: 'ml', zone: 'b' }, taints: [{ key: 'dedicated', value: 'ml', effect: 'NoSchedule' }] },
        ],
      },
      // The agent's nodeSelector is checked twice: by the platform against this entry's labels
      // (choosing the cluster), then by kube-scheduler against the cluster's Nodes.
      { id: 'k8s-placed', egressProxy: PROXY, labels: { pool: 'ml', zone: 'b' } },
    );
  }, 30_000);
  afterAll(async () => {
    await env?.close();
  });

  const create = async (body: Record<string, unknown>): Promise<AgentJson> => {
    const res = await env.api<AgentJson>('POST', '/api/v1/agents', { image: IMAGE, restartPolicy: 'Never', resources: { cpu: '100m', memory: '32Mi' }, ...body });
    expect(res.status, res.text).toBe(201);
    return res.json;
  };
  const waitPhase = (id: string, phase: string) =>
    waitFor(`agent ${id} ${phase}`, async () => {
      const a = (await env.api<AgentJson & { status: { endpoints?: { port: number; hostIp: string; hostPort: number }[]; message?: string } }>('GET', `/api/v1/agents/${id}`)).json;
      return a.status.phase === phase ? a : undefined;
    });
  const podOf = (id: string) => env.fake.get('pods', 'ap-default', `ap-${id}`);
  const envOf = (pod: ReturnType<typeof podOf>): Record<string, string> => Object.fromEntries((pod!.spec.containers[0].env ?? []).map((e: { name: string; value: string }) => [e.name, e.value]));

  it('gives the Pod the agent\'s nodeSelector, tolerations, node affinity and a deadline from timeoutSeconds', async () => {
    const tolerations = [{ key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'NoSchedule' }];
    const affinity = {
      required: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['b'] }] }],
      preferred: [{ weight: 20, term: { matchExpressions: [{ key: 'pool', operator: 'Exists' }] } }],
    };
    const a = await create({ name: 'placed', command: ['sh', '-c', 'sleep 300'], nodeSelector: { pool: 'ml' }, tolerations, affinity, timeoutSeconds: 600 });
    const running = await waitPhase(a.id, 'Running');
    expect(running.status.node).toBe('k8s-placed');
    const pod = podOf(a.id)!;
    expect(pod.spec.nodeSelector).toEqual({ pool: 'ml' });
    expect(pod.spec.tolerations).toEqual(tolerations);
    expect(pod.spec.affinity).toEqual({
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['b'] }] }] },
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 20, preference: { matchExpressions: [{ key: 'pool', operator: 'Exists' }] } }],
      },
    });
    // The timeout plus the backstop margin (the 120 s start timeout plus 60 s): the platform
    // stops the agent at 600 s itself, however long its start took.
    expect(pod.spec.activeDeadlineSeconds).toBe(600 + 120 + 60);
    expect(pod.spec.nodeName).toBe('dedicated');
    // Network none: no egress label, so only the namespace's default deny selects the Pod.
    expect(pod.metadata.labels).not.toHaveProperty(EGRESS_LABEL);
    expect(envOf(pod)).not.toHaveProperty('HTTP_PROXY');
    expect((await env.api('DELETE', `/api/v1/agents/${a.id}`)).status).toBeLessThan(300);
  });

  it('refuses user labels under the platform prefix with 400, naming the label', async () => {
    for (const key of [EGRESS_LABEL, 'io.agent-platform.agent-id', 'io.agent-platform.anything']) {
      const res = await env.api<{ error: { code: string; message: string } }>('POST', '/api/v1/agents', { name: 'sneaky', image: IMAGE, labels: { [key]: 'allowlist', team: 'ml' } });
      expect(res.status, res.text).toBe(400);
      expect(res.json.error.code).toBe('VALIDATION_FAILED');
      expect(res.json.error.message).toContain(`labels.${key}`);
      expect(res.json.error.message).toMatch(/reserved for the platform/);
    }
    const list = await env.api<{ items: AgentJson[] }>('GET', '/api/v1/agents');
    expect(list.json.items.map((i) => (i as unknown as { name: string }).name)).not.toContain('sneaky');
  });

  it('runs an allowlist agent with the egress label and the cluster proxy as HTTP(S)_PROXY', async () => {
    const a = await create({ name: 'allow', command: ['sh', '-c', 'sleep 300'], nodeSelector: { pool: 'ml' }, tolerations: [{ operator: 'Exists' }], labels: { team: 'ml' }, network: { mode: 'allowlist', allow: ['example.com'] } });
    await waitPhase(a.id, 'Running');
    const pod = podOf(a.id)!;
    expect(pod.metadata.labels[EGRESS_LABEL]).toBe('allowlist');
    expect(pod.metadata.labels.team).toBe('ml');
    // The proxy URL carries the agent's credentials (test/kubernetes/egress-on-kubernetes.test.ts uses them).
    const proxyUrl = new RegExp(`^http://${a.id}:[A-Za-z0-9_-]{43}@10\\.96\\.12\\.7:3128$`);
    expect(envOf(pod)).toMatchObject({ HTTP_PROXY: expect.stringMatching(proxyUrl), NO_PROXY: 'localhost,127.0.0.1' });
    expect(new Set([envOf(pod).HTTP_PROXY, envOf(pod).HTTPS_PROXY, envOf(pod).http_proxy, envOf(pod).https_proxy]).size).toBe(1);
    // The policy that label selects: DNS and the proxy, nothing else.
    const policy = env.fake.get('networkpolicies', 'ap-default', 'allow-egress-proxy')!;
    expect(policy.spec.podSelector).toEqual({ matchLabels: { [EGRESS_LABEL]: 'allowlist' } });
    expect(policy.spec.egress[1]).toEqual({ to: [{ ipBlock: { cidr: PROXY.cidr } }], ports: [{ protocol: 'TCP', port: PROXY.port }] });
    expect((await env.api('DELETE', `/api/v1/agents/${a.id}`)).status).toBeLessThan(300);
  });

  it('lets an open agent out through the open-egress policy', async () => {
    const a = await create({ name: 'open', command: ['sh', '-c', 'sleep 300'], nodeSelector: { pool: 'ml' }, tolerations: [{ operator: 'Exists' }], network: { mode: 'open' } });
    await waitPhase(a.id, 'Running');
    const pod = podOf(a.id)!;
    expect(pod.metadata.labels[EGRESS_LABEL]).toBe('open');
    expect(envOf(pod)).not.toHaveProperty('HTTP_PROXY');
    const policy = env.fake.get('networkpolicies', 'ap-default', 'allow-egress-open')!;
    expect(policy.spec).toEqual({ podSelector: { matchLabels: { [EGRESS_LABEL]: 'open' } }, policyTypes: ['Egress'], egress: [{}] });
    expect((await env.api('DELETE', `/api/v1/agents/${a.id}`)).status).toBeLessThan(300);
  });

  it('exposes ports with a Service (endpoints at its cluster IP) and removes it with the agent', async () => {
    const a = await create({ name: 'web', command: ['sh', '-c', 'sleep 300'], nodeSelector: { pool: 'ml' }, tolerations: [{ operator: 'Exists' }], expose: [{ port: 8080 }] });
    const running = await waitFor('Running with endpoints', async () => {
      const got = await waitPhase(a.id, 'Running');
      return got.status.endpoints ? got : undefined;
    });
    const service = env.fake.get('services', 'ap-default', `ap-${a.id}`)!;
    expect(service.spec.selector).toEqual({ [AGENT_ID_LABEL]: a.id });
    expect(service.spec.ports).toEqual([{ name: 'port-0', port: 8080, targetPort: 8080, protocol: 'TCP' }]);
    expect(running.status.endpoints).toEqual([{ port: 8080, hostIp: service.spec.clusterIP, hostPort: 8080 }]);
    expect(env.fake.get('networkpolicies', 'ap-default', `allow-ingress-ap-${a.id}`)!.spec.ingress).toEqual([{ ports: [{ protocol: 'TCP', port: 8080 }] }]);

    expect((await env.api('DELETE', `/api/v1/agents/${a.id}`)).status).toBeLessThan(300);
    await waitFor('the agent to be gone', async () => ((await env.api('GET', `/api/v1/agents/${a.id}`)).status === 404 ? true : undefined));
    expect(podOf(a.id)).toBeUndefined();
    expect(env.fake.get('services', 'ap-default', `ap-${a.id}`)).toBeUndefined();
    expect(env.fake.get('networkpolicies', 'ap-default', `allow-ingress-ap-${a.id}`)).toBeUndefined();
    // The namespace's own policies stay.
    expect(env.fake.all('networkpolicies').map((p) => p.metadata.name).sort()).toEqual(['allow-egress-open', 'allow-egress-proxy', 'default-deny']);
  });

  it('deletes an exposed agent\'s Service and ingress policy when its Pod was gone before the delete (nothing to remove)', async () => {
    const a = await create({ name: 'web-gone', command: ['sh', '-c', 'sleep 300'], expose: [{ port: 8081 }] });
    await waitFor('Running with endpoints', async () => {
      const got = await waitPhase(a.id, 'Running');
      return got.status.endpoints ? got : undefined;
    });
    // The Pod disappears behind the platform's back: the agent ends (restartPolicy Never), and
    // its Service stays, since nothing removed a Pod.
    env.fake.deletePodNow('ap-default', `ap-${a.id}`);
    await waitPhase(a.id, 'Failed');
    expect(env.fake.get('services', 'ap-default', `ap-${a.id}`)).toBeDefined();

    expect((await env.api('DELETE', `/api/v1/agents/${a.id}`)).status).toBeLessThan(300);
    await waitFor('the agent to be gone', async () => ((await env.api('GET', `/api/v1/agents/${a.id}`)).status === 404 ? true : undefined));
    expect(env.fake.get('services', 'ap-default', `ap-${a.id}`)).toBeUndefined();
    expect(env.fake.get('networkpolicies', 'ap-default', `allow-ingress-ap-${a.id}`)).toBeUndefined();
  });

  it('rebuilds a restarted Pod from the agent\'s current spec: a network mode changed while stopped takes effect', async () => {
    const a = await create({ name: 'switch', command: ['sh', '-c', 'sleep 300'], labels: { team: 'ml' }, env: { MODE: 'x' }, timeoutSeconds: 600, network: { mode: 'open' } });
    await waitPhase(a.id, 'Running');
    expect(podOf(a.id)!.metadata.labels[EGRESS_LABEL]).toBe('open');

    /** Stop, change the network policy, start again; returns the new Pod once it runs. */
    const restartWith = async (network: Record<string, unknown>) => {
      const stopped = await env.api('POST', `/api/v1/agents/${a.id}/stop`);
      expect(stopped.status, stopped.text).toBe(200);
      await waitPhase(a.id, 'Stopped');
      const ended = podOf(a.id)!;
      expect(ended.status.phase, 'the stopped Pod stays, with its logs').toMatch(/Failed|Succeeded/);
      const patched = await env.api('PATCH', `/api/v1/agents/${a.id}`, { network });
      expect(patched.status, patched.text).toBe(200);
      const started = await env.api('POST', `/api/v1/agents/${a.id}/start`);
      expect(started.status, started.text).toBe(200);
      await waitPhase(a.id, 'Running');
      const pod = podOf(a.id)!;
      expect(pod.metadata.uid, 'a new Pod replaced the ended one').not.toBe(ended.metadata.uid);
      // What does not change is rebuilt the same: user labels, env, placement, the deadline.
      expect(pod.metadata.labels.team).toBe('ml');
      expect(envOf(pod)).toMatchObject({ MODE: 'x', AGENT_ID: a.id });
      expect(pod.spec.activeDeadlineSeconds).toBe(600 + 120 + 60);
      expect(pod.spec.schedulingGates).toBeUndefined();
      return pod;
    };

    const none = await restartWith({ mode: 'none' });
    expect(none.metadata.labels, 'no egress label: only the default deny selects it').not.toHaveProperty(EGRESS_LABEL);
    expect(envOf(none)).not.toHaveProperty('HTTP_PROXY');

    const allow = await restartWith({ mode: 'allowlist', allow: ['example.com'] });
    expect(allow.metadata.labels[EGRESS_LABEL]).toBe('allowlist');
    const proxyUrl = new RegExp(`^http://${a.id}:[A-Za-z0-9_-]{43}@10\\.96\\.12\\.7:3128$`);
    expect(envOf(allow)).toMatchObject({ HTTP_PROXY: expect.stringMatching(proxyUrl), https_proxy: expect.stringMatching(proxyUrl), NO_PROXY: 'localhost,127.0.0.1' });

    const back = await restartWith({ mode: 'none' });
    expect(back.metadata.labels).not.toHaveProperty(EGRESS_LABEL);
    expect(Object.keys(envOf(back)).filter((k) => /proxy/i.test(k))).toEqual([]);
    expect((await env.api('DELETE', `/api/v1/agents/${a.id}`)).status).toBeLessThan(300);
  });
});

describe.sequential('the platform with a Kubernetes node without an egress proxy (fake API server)', () => {
  let env: Awaited<ReturnType<typeof bootOnFake>>;

  beforeAll(async () => {
    env = await bootOnFake({ bookmarkIntervalMs: 200 }, { id: 'k8s-no-proxy' });
  }, 30_000);
  afterAll(async () => {
    await env?.close();
  });

  it('fails an allowlist agent at placement with NetworkUnavailable, saying what to configure, and makes no Pod', async () => {
    const created = await env.api<AgentJson>('POST', '/api/v1/agents', { name: 'allow', image: IMAGE, command: ['sh', '-c', 'sleep 300'], network: { mode: 'allowlist', allow: ['example.com'] } });
    expect(created.status, created.text).toBe(201);
    const failed = await waitFor('Failed', async () => {
      const a = (await env.api<AgentJson & { status: { message?: string } }>('GET', `/api/v1/agents/${created.json.id}`)).json;
      expect(a.status.phase).not.toBe('Running');
      return a.status.phase === 'Failed' ? a : undefined;
    });
    expect(failed.status.reason).toBe('NetworkUnavailable');
    expect(failed.status.message).toMatch(/node k8s-no-proxy \(Kubernetes\) has no egress proxy.*"egressProxy"/);
    expect(env.fake.all('pods')).toEqual([]);
  });
});
