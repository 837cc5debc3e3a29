import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { shellSpec, waitFor } from '../conformance/runtime-conformance.js';
import type { Agent } from '../../src/domain/agent.js';
import { ManualClock } from '../../src/domain/clock.js';
import { createKubernetesRuntime, type KubernetesRuntime } from '../../src/runtime/kubernetes/kubernetes-runtime.js';
import { containerName } from '../../src/runtime/runtime.js';
import { AgentSandbox, EXPOSE_RETRY_INITIAL_MS, EXPOSE_RETRY_MAX_MS } from '../../src/security/agent-sandbox.js';
import { SecretCipher } from '../../src/security/secret-cipher.js';
import { SecretService } from '../../src/security/secret-service.js';
import { openStore } from '../../src/store/open-store.js';
import { FakeKubeApiServer } from './fake-kube-apiserver.js';

/**
 * An exposed agent's Service and ingress NetworkPolicy on a cluster: they go with the agent
 * whatever the informer cache knew, and a Service that gets no cluster IP (or an API that
 * fails) is not asked for again on every reconcile. Against the FAKE API server (no
 * kube-apiserver runs on these machines), real HTTPS; the sandbox on a real SQLite store.
 */

const IMAGE = 'agent-platform/busybox:latest';
const TENANT = 'acme';
const NAMESPACE = 'ap-acme';

describe('exposed agents on a cluster (fake API server)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(): Promise<{ fake: FakeKubeApiServer; runtime: KubernetesRuntime; dir: string }> {
    const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 200 });
    const dir = mkdtempSync(join(tmpdir(), 'k8s-expose-'));
    const runtime = createKubernetesRuntime({ kubeconfigPath: fake.writeKubeconfig(dir), watchReconnectInitialMs: 50 });
    const abort = new AbortController();
    runtime.watch(() => undefined, abort.signal);
    cleanups.push(async () => {
      abort.abort();
      await runtime.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return { fake, runtime, dir };
  }

  const exposedObjects = (fake: FakeKubeApiServer, agentId: string) => ({
    service: fake.get('services', NAMESPACE, containerName(agentId)),
    policy: fake.get('networkpolicies', NAMESPACE, `allow-ingress-${containerName(agentId)}`),
  });

  it('remove() deletes the Service and ingress policy although the cached Pod never learnt it was exposed', async () => {
    const { fake, runtime } = await setup();
    // Exposed before the Pod exists (as when the expose of a start races the Pod into the
    // cache): no mark on the Pod could ever say so, which is what remove() used to rely on.
    const endpoints = await runtime.exposeAgent(TENANT, { agentId: 'early', ports: [{ port: 8080 }] });
    expect(endpoints).toHaveLength(1);
    const id = await runtime.create(shellSpec('early', IMAGE, 'sleep 60', { tenantId: TENANT }));
    await runtime.start(id);
    expect(exposedObjects(fake, 'early').service).toBeDefined();
    expect(exposedObjects(fake, 'early').policy).toBeDefined();

    // Stop right after the start, then remove: the Pod, the Service and the policy all go.
    await runtime.stop(id, 1_000);
    await runtime.remove(id);
    expect(fake.get('pods', NAMESPACE, id)).toBeUndefined();
    expect(exposedObjects(fake, 'early')).toEqual({ service: undefined, policy: undefined });
  });

  it('remove() deletes them when the Pod is already gone from the cluster and the cache', async () => {
    const { fake, runtime } = await setup();
    const id = await runtime.create(shellSpec('vanished', IMAGE, 'sleep 60', { tenantId: TENANT }));
    await runtime.start(id);
    await runtime.exposeAgent(TENANT, { agentId: 'vanished', ports: [{ port: 9000 }] });
    fake.deletePodNow(NAMESPACE, id);
    await waitFor('the informer to drop the Pod', async () => ((await runtime.inspect(id)) === undefined ? true : undefined));
    expect(exposedObjects(fake, 'vanished').service, 'the Service outlives its Pod until remove()').toBeDefined();

    await runtime.remove(id);
    expect(exposedObjects(fake, 'vanished')).toEqual({ service: undefined, policy: undefined });
    // Idempotent: a second remove finds nothing and fails on nothing.
    await runtime.remove(id);
    // Another agent's objects in the namespace are untouched.
    await runtime.exposeAgent(TENANT, { agentId: 'neighbour', ports: [{ port: 9000 }] });
    await runtime.remove(containerName('other'));
    expect(exposedObjects(fake, 'neighbour').service).toBeDefined();
  });

  describe('the sandbox retrying an expose that gave no endpoints', () => {
    async function sandboxOn(runtime: KubernetesRuntime, dir: string): Promise<{ sandbox: AgentSandbox; clock: ManualClock }> {
      const clock = new ManualClock();
      const store = await openStore(undefined, join(dir, 'data'));
      cleanups.push(() => store.close());
      const sandbox = new AgentSandbox({
        secrets: new SecretService(store, new SecretCipher(randomBytes(32)), clock),
        servesNode: () => false,
        clusterOf: (nodeId) => (nodeId === runtime.nodeId ? runtime : undefined),
        clock,
      });
      return { sandbox, clock };
    }

    const exposedAgent = (id: string, nodeId: string): Agent => ({
      id,
      tenantId: TENANT,
      name: id,
      labels: {},
      spec: {
        image: IMAGE,
        command: ['sh', '-c', 'sleep 60'],
        args: [],
        env: {},
        resources: { cpuMillicores: 100, memoryMiB: 32, gpu: 0, cpuLimitMillicores: 100, memoryLimitMiB: 32 },
        restartPolicy: 'Never',
        schedulingPolicy: 'spread',
        priority: 0,
        nodeSelector: {},
        tolerations: [],
        expose: [{ port: 8080 }],
      },
      desired: 'running',
      status: { phase: 'Running', node: nodeId, containerId: containerName(id), restarts: 0, phaseSince: 0 },
      createdAt: 0,
      updatedAt: 0,
      version: 1,
    });
    const running = (id: string) => ({ containerId: containerName(id), agentId: id, state: 'running' as const, oomKilled: false });
    /** API calls since `from`, but the informer's watch: the tests make them one agent at a time. */
    const callsSince = (fake: FakeKubeApiServer, from: number): number => fake.requests.slice(from).filter((r) => !r.query.includes('watch=true')).length;

    it('backs off per agent while the Service has no cluster IP, and starts over after a success', async () => {
      const { fake, runtime, dir } = await setup();
      const { sandbox, clock } = await sandboxOn(runtime, dir);
      const agent = exposedAgent('headless', runtime.nodeId);
      // A headless Service under the agent's name: exposeAgent keeps its clusterIP "None" and
      // so finds no address to report.
      await runtime.ensureNamespace(TENANT);
      await runtime.client.request(`/api/v1/namespaces/${NAMESPACE}/services`, {
        method: 'POST',
        body: { apiVersion: 'v1', kind: 'Service', metadata: { name: containerName(agent.id), namespace: NAMESPACE }, spec: { clusterIP: 'None', selector: { app: 'x' }, ports: [{ port: 8080 }] } },
      });

      let mark = fake.requests.length;
      expect(await sandbox.observe(agent, running(agent.id))).toBeUndefined();
      expect(callsSince(fake, mark), 'one expose reads and writes the Service and the policy').toBeGreaterThanOrEqual(4);

      // Reconciles inside the delay cost no API call; each delay doubles.
      let delayMs = EXPOSE_RETRY_INITIAL_MS;
      for (let attempt = 2; attempt <= 4; attempt++) {
        mark = fake.requests.length;
        clock.advance(delayMs - 1);
        for (let i = 0; i < 5; i++) expect(await sandbox.observe(agent, running(agent.id))).toBeUndefined();
        expect(callsSince(fake, mark), `no call before retry ${attempt} is due`).toBe(0);
        clock.advance(1);
        expect(await sandbox.observe(agent, running(agent.id))).toBeUndefined();
        expect(callsSince(fake, mark), `retry ${attempt} when due`).toBeGreaterThanOrEqual(4);
        delayMs *= 2;
      }
      // Bounded: after many failures the delay stops growing at the maximum.
      for (let i = 0; i < 10; i++) {
        clock.advance(EXPOSE_RETRY_MAX_MS);
        await sandbox.observe(agent, running(agent.id));
      }
      mark = fake.requests.length;
      clock.advance(EXPOSE_RETRY_MAX_MS - 1);
      await sandbox.observe(agent, running(agent.id));
      expect(callsSince(fake, mark)).toBe(0);
      clock.advance(1);
      await sandbox.observe(agent, running(agent.id));
      expect(callsSince(fake, mark)).toBeGreaterThanOrEqual(4);

      // The Service gets an address (replaced by an ordinary one): the next due attempt
      // reports the endpoints, and the agent's delay is forgotten.
      await runtime.client.request(`/api/v1/namespaces/${NAMESPACE}/services/${containerName(agent.id)}`, { method: 'DELETE' });
      clock.advance(EXPOSE_RETRY_MAX_MS);
      const ok = await sandbox.observe(agent, running(agent.id));
      expect(ok?.endpoints).toEqual([{ port: 8080, hostIp: expect.stringMatching(/^10\.96\./), hostPort: 8080 }]);
      // Endpoints lost again (say a status write failed) and the Service headless again: the
      // first attempt runs at once, not after the old delay.
      await runtime.client.request(`/api/v1/namespaces/${NAMESPACE}/services/${containerName(agent.id)}`, { method: 'DELETE' });
      await runtime.client.request(`/api/v1/namespaces/${NAMESPACE}/services`, {
        method: 'POST',
        body: { apiVersion: 'v1', kind: 'Service', metadata: { name: containerName(agent.id), namespace: NAMESPACE }, spec: { clusterIP: 'None', selector: { app: 'x' }, ports: [{ port: 8080 }] } },
      });
      mark = fake.requests.length;
      await sandbox.observe(agent, running(agent.id));
      expect(callsSince(fake, mark)).toBeGreaterThanOrEqual(4);
      mark = fake.requests.length;
      await sandbox.observe(agent, running(agent.id));
      expect(callsSince(fake, mark), 'and then waits again').toBe(0);
    });

    it('backs off while the API fails, per agent: another agent is not held back', async () => {
      const { fake, runtime, dir } = await setup();
      const { sandbox, clock } = await sandboxOn(runtime, dir);
      const failing = exposedAgent('failing', runtime.nodeId);
      // The first expose ensures the namespace (once per process); deleting it then makes
      // every expose in it fail (404).
      await sandbox.observe(exposedAgent('first', runtime.nodeId), running('first'));
      await runtime.client.request(`/api/v1/namespaces/${NAMESPACE}`, { method: 'DELETE' });

      let mark = fake.requests.length;
      expect(await sandbox.observe(failing, running(failing.id))).toBeUndefined();
      expect(callsSince(fake, mark)).toBeGreaterThan(0);
      mark = fake.requests.length;
      for (let i = 0; i < 5; i++) expect(await sandbox.observe(failing, running(failing.id))).toBeUndefined();
      expect(callsSince(fake, mark), 'no call inside the delay').toBe(0);

      // Another agent whose endpoints are missing is tried at once.
      const other = exposedAgent('other', runtime.nodeId);
      mark = fake.requests.length;
      await sandbox.observe(other, running(other.id));
      expect(callsSince(fake, mark)).toBeGreaterThan(0);

      // A stopped agent has no endpoints to look for, and forgets its delay: running again, it is tried at once.
      await sandbox.observe(failing, undefined);
      mark = fake.requests.length;
      await sandbox.observe(failing, running(failing.id));
      expect(callsSince(fake, mark)).toBeGreaterThan(0);
      clock.advance(EXPOSE_RETRY_INITIAL_MS);
      mark = fake.requests.length;
      await sandbox.observe(failing, running(failing.id));
      expect(callsSince(fake, mark), 'due again after the first delay').toBeGreaterThan(0);
    });
  });
});
