import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { KubernetesUsageCollector } from '../../src/metrics/kubernetes-usage-collector.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { KubeApiError } from '../../src/runtime/kubernetes/kube-client.js';
import { createKubernetesRuntime, type KubernetesRuntime } from '../../src/runtime/kubernetes/kubernetes-runtime.js';
import { shellSpec } from '../conformance/runtime-conformance.js';
import { FakeKubeApiServer } from './fake-kube-apiserver.js';
import { waitFor } from '../helpers/wait-for.js';

/**
 * Agent usage on a Kubernetes node, read from metrics.k8s.io, against the FAKE API server
 * (test/kubernetes/fake-kube-apiserver.ts): what the fake's metrics API reports for a Pod
 * must come out of GET /api/v1/agents/{id} and /metrics, and a cluster without the API must
 * give no usage and no error spam.
 */

const IMAGE = 'agent-platform/busybox:latest';
const Mi = 2 ** 20;
const METRICS_PATH = '/apis/metrics.k8s.io/v1beta1/pods';

interface AgentJson {
  id: string;
  status: { phase: string; containerId?: string };
  usage?: { cpuCores: number | null; memoryWorkingSetBytes: number; memoryLimitBytes: number; cpuLimitCores: number; sampledAt: string };
}

/** A platform with one Kubernetes node on a fake cluster; its log lines (JSON) are kept. */
async function boot(fakeOptions: Parameters<typeof FakeKubeApiServer.start>[0]) {
  const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 200, ...fakeOptions });
  const dir = mkdtempSync(join(tmpdir(), 'ap-k8s-usage-'));
  const token = `k8s_${randomBytes(16).toString('hex')}`;
  const logLines: Record<string, unknown>[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const config = loadConfig({
    AGENT_PLATFORM_DATA_DIR: join(dir, 'data'),
    AGENT_PLATFORM_ADMIN_TOKEN: token,
    AGENT_PLATFORM_PORT: '0',
    AGENT_PLATFORM_LOG_LEVEL: 'info',
    AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
    AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: '500',
    AGENT_PLATFORM_USAGE_INTERVAL_MS: '200',
    AGENT_PLATFORM_STOP_GRACE_MS: '1000',
    AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'kubernetes', kubeconfig: fake.writeKubeconfig(dir, 'fake-ctx'), context: 'fake-ctx' }]),
  });
  let platform: Platform | undefined;
  try {
    platform = await buildPlatform(config, { logStream });
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
      baseUrl,
      api,
      logLines,
      async runningAgent(name: string): Promise<{ id: string; podName: string }> {
        const created = await api<AgentJson>('POST', '/api/v1/agents', {
          name,
          image: IMAGE,
          command: ['sh', '-c', 'sleep 300'],
          restartPolicy: 'Never',
          resources: { cpu: '500m', memory: '128Mi' },
        });
        expect(created.status, created.text).toBe(201);
        const running = await waitFor('Running', async () => {
          const a = (await api<AgentJson>('GET', `/api/v1/agents/${created.json.id}`)).json;
          return a.status.phase === 'Running' ? a : undefined;
        });
        return { id: created.json.id, podName: running.status.containerId! };
      },
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

/** The value of one series of the text exposition, else undefined. */
function seriesValue(text: string, name: string, agentId: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`agent="${agentId}"`));
  return line === undefined ? undefined : Number(line.slice(line.indexOf('}') + 1).trim().split(/\s+/)[0]);
}

describe('KubernetesRuntime.podMetrics against the fake metrics API', () => {
  let fake: FakeKubeApiServer;
  let dir: string;
  let runtime: KubernetesRuntime;
  let other: KubernetesRuntime;

  beforeAll(async () => {
    fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 200 });
    dir = mkdtempSync(join(tmpdir(), 'k8s-pod-metrics-'));
    const kubeconfigPath = fake.writeKubeconfig(dir);
    runtime = createKubernetesRuntime({ kubeconfigPath, instanceId: 'usage-a' });
    other = createKubernetesRuntime({ kubeconfigPath, instanceId: 'usage-b' });
  }, 30_000);
  afterEach(() => {
    fake.metricsApi = true;
  });
  afterAll(async () => {
    await runtime?.close();
    await other?.close();
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lists running Pods of this installation only, with figures as the API writes them and the limit from the spec', async () => {
    const spec = { ...shellSpec('pm-run', IMAGE, 'sleep 300', { tenantId: 'usage' }), memoryLimitMiB: 96 };
    const running = await runtime.create(spec);
    const held = await runtime.create(shellSpec('pm-held', IMAGE, 'sleep 300', { tenantId: 'usage' })); // created, not started
    const foreign = await other.create(shellSpec('pm-foreign', IMAGE, 'sleep 300', { tenantId: 'usage' }));
    await runtime.start(running);
    await other.start(foreign);
    fake.setPodUsage('ap-usage', running, { cpu: '123456789n', memory: '65536Ki' });

    const samples = await runtime.podMetrics();
    expect(samples).toEqual([
      {
        podName: running,
        namespace: 'ap-usage',
        timestampMs: expect.any(Number),
        windowMs: 15_000,
        cpuCores: expect.closeTo(0.123456789, 12),
        memoryWorkingSetBytes: 64 * Mi,
        memoryLimitBytes: 96 * Mi,
      },
    ]);
    expect(Math.abs(samples[0]!.timestampMs - Date.now())).toBeLessThan(5_000);
    expect(samples.map((s) => s.podName)).not.toContain(held);
    // One cluster-wide list, selected by this installation's labels.
    const asked = fake.requests.filter((r) => r.path === METRICS_PATH).at(-1)!;
    expect(decodeURIComponent(asked.query)).toContain('io.agent-platform.instance=usage-a');

    // Ended: no longer in the list (metrics-server drops Pods that stopped).
    await runtime.stop(running, 1_000);
    await waitFor('the Pod to end', async () => ((await runtime.inspect(running))?.state === 'exited' ? true : undefined));
    expect(await runtime.podMetrics()).toEqual([]);
    for (const id of [running, held]) await runtime.remove(id);
    await other.remove(foreign);
  });

  it('rejects with 404 when the cluster does not serve metrics.k8s.io', async () => {
    fake.metricsApi = false;
    const err = await runtime.podMetrics().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).httpStatus).toBe(404);
  });

  it('the collector over the real runtime: absent, then available once the API appears, counter integrated from the rate', async () => {
    const id = await runtime.create(shellSpec('pm-collect', IMAGE, 'sleep 300', { tenantId: 'usage' }));
    await runtime.start(id);
    fake.setPodUsage('ap-usage', id, { cpu: '2', memory: '10Mi' });
    fake.metricsApi = false;
    const collector = new KubernetesUsageCollector({ source: runtime, absentRetryMs: 300 });
    const before = fake.requests.filter((r) => r.path === METRICS_PATH).length;
    expect((await collector.collect([id])).size).toBe(0);
    expect(collector.availability).toBe('absent');
    expect((await collector.collect([id])).size).toBe(0); // within absentRetryMs: not asked
    expect(fake.requests.filter((r) => r.path === METRICS_PATH).length).toBe(before + 1);

    fake.metricsApi = true;
    const first = await waitFor('the API to be noticed', async () => (await collector.collect([id])).get(id), 5_000);
    expect(collector.availability).toBe('available');
    expect(first).toMatchObject({ source: 'metrics-api', cpuUsageSeconds: 0, memoryWorkingSetBytes: 10 * Mi, memoryUsageBytes: 10 * Mi });
    await new Promise((r) => setTimeout(r, 300));
    const second = (await collector.collect([id])).get(id)!;
    expect(second.cpuUsageSeconds).toBeCloseTo((2 * (second.timestampMs - first.timestampMs)) / 1000, 9);
    expect(second.cpuUsageSeconds).toBeGreaterThan(0.5);
    await runtime.remove(id);
  });
});

describe.sequential('the platform on a cluster that serves metrics.k8s.io (fake API server)', () => {
  let env: Awaited<ReturnType<typeof boot>>;
  beforeAll(async () => {
    env = await boot({});
  }, 30_000);
  afterAll(async () => {
    await env?.close();
  });

  it('GET /api/v1/agents/{id}, its history and /metrics show what the metrics API reports', async () => {
    const { id, podName } = await env.runningAgent('measured');
    env.fake.setPodUsage('ap-default', podName, { cpu: '250m', memory: '65536Ki' });
    const usage = await waitFor('usage with a CPU rate', async () => {
      const a = (await env.api<AgentJson>('GET', `/api/v1/agents/${id}`)).json;
      return a.usage?.cpuCores === 0.25 && a.usage.memoryWorkingSetBytes === 64 * Mi ? a.usage : undefined;
    });
    expect(usage).toMatchObject({ memoryLimitBytes: 128 * Mi, cpuLimitCores: 0.5 });

    // New figures, in other quantity forms, come through on the next rounds.
    env.fake.setPodUsage('ap-default', podName, { cpu: '1500000000n', memory: '100Mi' });
    await waitFor('the new figures', async () => {
      const a = (await env.api<AgentJson>('GET', `/api/v1/agents/${id}`)).json;
      return a.usage?.cpuCores === 1.5 && a.usage.memoryWorkingSetBytes === 100 * Mi ? true : undefined;
    });
    const history = await env.api<{ points: { cpuCores: number | null; memoryWorkingSetBytes: number }[] }>('GET', `/api/v1/agents/${id}/metrics`);
    expect(history.status, history.text).toBe(200);
    expect(history.json.points.some((p) => p.cpuCores === 0.25 && p.memoryWorkingSetBytes === 64 * Mi)).toBe(true);
    expect(history.json.points.at(-1)).toMatchObject({ cpuCores: 1.5, memoryWorkingSetBytes: 100 * Mi });

    const metrics = await fetch(`${env.baseUrl}/metrics`).then((r) => r.text());
    expect(seriesValue(metrics, 'container_memory_working_set_bytes', id)).toBe(100 * Mi);
    expect(seriesValue(metrics, 'container_spec_memory_limit_bytes', id)).toBe(128 * Mi);
    expect(seriesValue(metrics, 'container_cpu_usage_seconds_total', id)).toBeGreaterThan(0);
    // The API does not say: no OOM series rather than a zero.
    expect(seriesValue(metrics, 'container_oom_events_total', id)).toBeUndefined();

    // No warnings from usage collection on the way.
    expect(env.logLines.filter((l) => l.component === 'usage-sampler' && Number(l.level) >= 40)).toEqual([]);
  });

  it('a stopped agent drops out of usage', async () => {
    const { id } = await env.runningAgent('stopped');
    await waitFor('usage', async () => ((await env.api<AgentJson>('GET', `/api/v1/agents/${id}`)).json.usage ? true : undefined));
    expect((await env.api('POST', `/api/v1/agents/${id}/stop`)).status).toBeLessThan(300);
    const stopped = await waitFor('Stopped without usage', async () => {
      const a = (await env.api<AgentJson>('GET', `/api/v1/agents/${id}`)).json;
      return a.status.phase === 'Stopped' ? a : undefined;
    });
    await new Promise((r) => setTimeout(r, 500)); // a few sampling rounds
    expect((await env.api<AgentJson>('GET', `/api/v1/agents/${id}`)).json.usage, JSON.stringify(stopped)).toBeUndefined();
  });
});

describe.sequential('the platform on a cluster without metrics.k8s.io (fake API server)', () => {
  let env: Awaited<ReturnType<typeof boot>>;
  beforeAll(async () => {
    env = await boot({ metricsApi: false });
  }, 30_000);
  afterAll(async () => {
    await env?.close();
  });

  it('runs agents without usage, asks once, and logs one info line, no warnings', async () => {
    const { id } = await env.runningAgent('unmeasured');
    const rounds = env.platform.usage.completedRounds;
    await waitFor('ten sampling rounds', async () => (env.platform.usage.completedRounds >= rounds + 10 ? true : undefined));
    const agent = (await env.api<AgentJson>('GET', `/api/v1/agents/${id}`)).json;
    expect(agent.status.phase).toBe('Running');
    expect(agent.usage).toBeUndefined();
    const metrics = await fetch(`${env.baseUrl}/metrics`).then((r) => r.text());
    expect(seriesValue(metrics, 'container_memory_working_set_bytes', id)).toBeUndefined();
    expect(metrics).toMatch(/agent_platform_agents/); // the exposition itself works

    // Asked once (then every 5 minutes), not once per round.
    expect(env.fake.requests.filter((r) => r.path.startsWith('/apis/metrics.k8s.io/')).length).toBe(1);
    const usageLines = env.logLines.filter((l) => l.component === 'usage-sampler');
    expect(usageLines.filter((l) => Number(l.level) >= 40)).toEqual([]);
    expect(usageLines.filter((l) => /metrics\.k8s\.io/.test(String(l.msg)))).toHaveLength(1);
  });
});
