import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { shellSpec, waitFor } from '../conformance/runtime-conformance.js';
import { KubeApiError } from '../../src/runtime/kubernetes/kube-client.js';
import { createKubernetesRuntime, type KubeNodeSnapshot, type KubePlacementRequest, type KubernetesRuntime, type KubernetesRuntimeOptions } from '../../src/runtime/kubernetes/kubernetes-runtime.js';
import type { RuntimeEvent } from '../../src/runtime/runtime.js';
import { leastAllocatedNode } from '../../src/nodes/node-definitions.js';
import { FakeKubeApiServer, type FakeKubeApiServerOptions } from './fake-kube-apiserver.js';

/**
 * Kubernetes-specific behaviour of the runtime, against the FAKE API server over real
 * HTTPS: the informer (bookmarks, 410 relist, reconnects, no per-Pod polling), binding
 * mode, tenant namespaces, kubeconfig handling.
 */
describe('KubernetesRuntime against the fake API server', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(fakeOptions: FakeKubeApiServerOptions = {}, options: KubernetesRuntimeOptions = {}): Promise<{ fake: FakeKubeApiServer; runtime: KubernetesRuntime; events: RuntimeEvent[]; dir: string }> {
    const fake = await FakeKubeApiServer.start(fakeOptions);
    const dir = mkdtempSync(join(tmpdir(), 'k8s-runtime-'));
    const runtime = createKubernetesRuntime({ kubeconfigPath: fake.writeKubeconfig(dir), watchReconnectInitialMs: 50, ...options });
    const events: RuntimeEvent[] = [];
    const abort = new AbortController();
    runtime.watch((e) => events.push(e), abort.signal);
    cleanups.push(async () => {
      abort.abort();
      await runtime.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return { fake, runtime, events, dir };
  }

  const spec = (agentId: string, script: string) => shellSpec(agentId, 'agent-platform/busybox:latest', script, { tenantId: 'acme' });

  it('observes many agents through one watch, without a request per agent', async () => {
    const { fake, runtime } = await setup();
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => runtime.create(spec(`many-${i}`, 'echo hi; sleep 0.3'))));
    await Promise.all(ids.map((id) => runtime.start(id)));
    await waitFor('all exited', async () => ((await runtime.list()).filter((c) => c.state === 'exited').length === 8 ? true : undefined));
    for (const id of ids) expect((await runtime.inspect(id))?.exitCode).toBe(0);
    const podGets = fake.requests.filter((r) => r.method === 'GET' && /\/pods\/[^/]+$/.test(r.path));
    expect(podGets).toEqual([]);
    const watches = fake.requests.filter((r) => r.query.includes('watch=true'));
    expect(watches.length).toBeLessThanOrEqual(2);
    expect(watches[0]!.query).toContain('allowWatchBookmarks=true');
    expect(decodeURIComponent(watches[0]!.query)).toContain('labelSelector=io.agent-platform.managed=true');
  });

  it('relists after 410 Gone and sees what changed while it was not watching', async () => {
    const { fake, runtime, events } = await setup();
    const id = await runtime.create(spec('gone-1', 'sleep 60'));
    await runtime.start(id);
    expect(runtime.podInformer.relists).toBe(1);
    // Cut the watch, delete the Pod and compact the history in one tick: the informer
    // resumes from a resourceVersion the server no longer has.
    fake.dropWatches();
    fake.deletePodNow('ap-acme', id);
    fake.compact();
    await waitFor('the relist', () => (runtime.podInformer.relists >= 2 ? true : undefined));
    await waitFor('the pod to be gone', async () => ((await runtime.inspect(id)) === undefined ? true : undefined));
    await waitFor('a destroy event', () => events.find((e) => e.containerId === id && e.action === 'destroy'));
    const expiredWatch = fake.requests.filter((r) => r.query.includes('watch=true'));
    expect(expiredWatch.length).toBeGreaterThanOrEqual(2);
  });

  it('keeps its resume point fresh with bookmarks, so a reconnect needs no relist', async () => {
    const { fake, runtime } = await setup({ bookmarkIntervalMs: 100, historyLimit: 3 });
    await runtime.list();
    // Writes that the Pod watch does not select push the Pod watch's resume point out of the history.
    for (const tenant of ['t1', 't2', 't3']) await runtime.ensureNamespace(tenant);
    const before = fake.resourceVersion;
    await waitFor('a bookmark past the writes', () => {
      const watches = fake.requests.filter((r) => r.query.includes('watch=true'));
      return watches.length > 0 ? true : undefined;
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    fake.dropWatches();
    await waitFor('the re-watch', () => (fake.requests.filter((r) => r.query.includes('watch=true')).length >= 2 ? true : undefined));
    const rewatch = fake.requests.filter((r) => r.query.includes('watch=true'))[1]!;
    expect(new URLSearchParams(rewatch.query).get('resourceVersion')).toBe(before);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(runtime.podInformer.relists).toBe(1);
  });

  it('reconnects after the server drops its watches and keeps reporting events', async () => {
    const { fake, runtime, events } = await setup();
    await runtime.list();
    fake.dropWatches();
    const id = await runtime.create(spec('reconnect-1', 'echo x'));
    await runtime.start(id);
    await waitFor('a die event after reconnecting', () => events.find((e) => e.containerId === id && e.action === 'die'));
    expect(fake.openWatches).toBe(1);
  });

  it('binding mode: Pods carry the schedulerName and the runtime binds them where chooseNode says', async () => {
    const seen: { request: KubePlacementRequest; nodes: KubeNodeSnapshot[] }[] = [];
    const { fake, runtime } = await setup(
      {
        nodes: [
          { name: 'cpu-node', cpu: '8', memory: '16Gi' },
          { name: 'gpu-node', cpu: '16', memory: '64Gi', gpu: 4, labels: { pool: 'gpu' } },
        ],
      },
      {
        binding: {
          schedulerName: 'agent-platform',
          chooseNode: (request, nodes) => {
            seen.push({ request, nodes });
            return nodes.find((n) => n.allocatable.gpu > 0)?.name;
          },
        },
      },
    );
    const first = await runtime.create(spec('bind-1', 'sleep 30'));
    expect(fake.get('pods', 'ap-acme', first)!.spec.schedulerName).toBe('agent-platform');
    await runtime.start(first);
    expect((await runtime.inspect(first))?.state).toBe('running');
    expect(fake.get('pods', 'ap-acme', first)!.spec.nodeName).toBe('gpu-node');
    expect(fake.requests.some((r) => r.method === 'POST' && r.path.endsWith(`/pods/${first}/binding`))).toBe(true);
    expect(seen[0]!.request).toMatchObject({ podName: first, agentId: 'bind-1', cpuMillicores: 100, memoryMiB: 64, gpu: 0 });
    expect(seen[0]!.nodes.find((n) => n.name === 'gpu-node')!.allocatable).toEqual({ cpuMillicores: 16000, memoryMiB: 65536, gpu: 4, pods: 110 });

    // The second placement sees the first Pod's requests on its node.
    const second = await runtime.create(spec('bind-2', 'sleep 30'));
    await runtime.start(second);
    expect(seen[1]!.nodes.find((n) => n.name === 'gpu-node')!.requested).toEqual({ cpuMillicores: 100, memoryMiB: 64, gpu: 0, pods: 1 });
    const info = await runtime.info();
    expect(info).toMatchObject({ cpuMillicores: 24000, memoryMiB: 80 * 1024, isolationClasses: ['runc', 'gvisor'] });
  });

  it('binding mode with the platform scheduler: keeps Pods off a Node whose taint they do not tolerate; Bindings are schema-valid', async () => {
    const { fake, runtime } = await setup(
      {
        nodes: [
          { name: 'big-tainted', cpu: '32', memory: '64Gi', taints: [{ key: 'dedicated', value: 'ml', effect: 'NoSchedule' }] },
          { name: 'small', cpu: '2', memory: '4Gi' },
        ],
      },
      // start() of the Pod no Node takes waits this long for it, then leaves it Pending.
      { binding: { schedulerName: 'agent-platform', chooseNode: leastAllocatedNode }, startWaitMs: 500 },
    );
    const plain = await runtime.create(spec('taint-1', 'sleep 30'));
    await runtime.start(plain);
    expect(fake.get('pods', 'ap-acme', plain)!.spec.nodeName).toBe('small');
    const tolerating = await runtime.create({ ...spec('taint-2', 'sleep 30'), placement: { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'NoSchedule' }] } });
    await runtime.start(tolerating);
    expect(fake.get('pods', 'ap-acme', tolerating)!.spec.nodeName).toBe('big-tainted');
    // Only the untolerated taint keeps a Pod Pending: a nodeSelector matching nothing too.
    const nowhere = await runtime.create({ ...spec('taint-3', 'sleep 30'), placement: { nodeSelector: { pool: 'none' } } });
    await runtime.start(nowhere);
    expect(fake.get('pods', 'ap-acme', nowhere)!.spec.nodeName).toBeUndefined();
    // Both Bindings went through the fake's schema check (validateBodies), which does refuse a bad one.
    expect(fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/binding'))).toHaveLength(2);
    const bad = runtime.client.request(`/api/v1/namespaces/ap-acme/pods/${nowhere}/binding`, {
      method: 'POST',
      body: { apiVersion: 'v1', kind: 'Binding', metadata: { name: nowhere }, target: { kind: 'Node', name: 'small', apiVersion: 1 } },
    });
    await expect(bad).rejects.toMatchObject({ httpStatus: 422 });
  });

  it('creates the tenant namespace with its policies on first use, and updates it in place', async () => {
    const { fake, runtime } = await setup(
      {},
      { namespaces: { quotaFor: () => ({ cpuMillicores: 2000, memoryMiB: 1024, gpu: 0, agents: 5 }), egressProxy: { cidr: '10.0.0.5/32', port: 3128 } } },
    );
    await runtime.create(spec('ns-1', 'true'));
    expect(fake.get('namespaces', undefined, 'ap-acme')!.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    expect(fake.get('resourcequotas', 'ap-acme', 'agent-platform-quota')!.spec.hard.pods).toBe('5');
    expect(fake.all('networkpolicies').map((p) => p.metadata.name).sort()).toEqual(['allow-egress-open', 'allow-egress-proxy', 'default-deny']);
    const rv = fake.get('resourcequotas', 'ap-acme', 'agent-platform-quota')!.metadata.resourceVersion;
    await runtime.ensureNamespace('acme', { cpuMillicores: 4000, memoryMiB: 2048, gpu: 1, agents: 9 });
    const updated = fake.get('resourcequotas', 'ap-acme', 'agent-platform-quota')!;
    expect(updated.spec.hard).toMatchObject({ pods: '9', 'requests.cpu': '4' });
    expect(updated.metadata.resourceVersion).not.toBe(rv);
  });

  it('stop keeps the Pod and its logs; remove deletes it', async () => {
    const { fake, runtime } = await setup();
    const id = await runtime.create(spec('stop-1', 'echo hello; sleep 60'));
    await runtime.start(id);
    await runtime.stop(id, 1_000);
    const stopped = await runtime.inspect(id);
    expect(stopped).toMatchObject({ state: 'exited', exitCode: 143 });
    expect(fake.get('pods', 'ap-acme', id)!.status.reason).toBe('DeadlineExceeded');
    const lines = [];
    for await (const l of runtime.logs(id, {})) lines.push(l.text);
    expect(lines).toEqual(['hello']);
    await runtime.remove(id);
    expect(fake.get('pods', 'ap-acme', id)).toBeUndefined();
  });

  it('merged log mode reads one stream and reports every line as stdout', async () => {
    const { runtime } = await setup({}, { logStreams: 'merged' });
    const id = await runtime.create(spec('merged-1', 'echo a; echo b >&2; echo c'));
    await runtime.start(id);
    await waitFor('exit', async () => ((await runtime.inspect(id))?.state === 'exited' ? true : undefined));
    const lines = [];
    for await (const l of runtime.logs(id, { tail: 2 })) lines.push(l);
    expect(lines.map((l) => [l.stream, l.text])).toEqual([
      ['stdout', 'b'],
      ['stdout', 'c'],
    ]);
  });

  it('picks the kubeconfig context by name and fails clearly with a wrong token', async () => {
    const fake = await FakeKubeApiServer.start();
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ctx-'));
    cleanups.push(async () => {
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const path = join(dir, 'config');
    writeFileSync(path, fake.kubeconfig('prod').replace(`token: ${fake.token}`, 'token: wrong'));
    const runtime = createKubernetesRuntime({ kubeconfigPath: path, context: 'prod' });
    cleanups.push(() => runtime.close());
    expect(runtime.nodeId).toBe('k8s-prod');
    const err = await runtime.ping().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).httpStatus).toBe(401);
    expect(() => createKubernetesRuntime({ kubeconfigPath: path, context: 'nope' })).toThrow(/context "nope"/);
  });
});
