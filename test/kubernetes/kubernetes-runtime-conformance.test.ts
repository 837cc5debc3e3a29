import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runtimeConformance } from '../conformance/runtime-conformance.js';
import { createKubernetesRuntime } from '../../src/runtime/kubernetes/kubernetes-runtime.js';
import { FakeKubeApiServer } from './fake-kube-apiserver.js';

/**
 * The shared Runtime conformance suite, run by the Kubernetes adapter over real HTTP
 * against the FAKE API server (test/kubernetes/fake-kube-apiserver.ts): no real
 * kube-apiserver can run on these machines. The kubeconfig is a real file pointing at
 * the fake, loaded the way a user's would be.
 */
runtimeConformance('kubernetes (against the fake API server)', async () => {
  const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 200 });
  const dir = mkdtempSync(join(tmpdir(), 'k8s-conformance-'));
  const runtime = createKubernetesRuntime({ kubeconfigPath: fake.writeKubeconfig(dir), logStreams: 'split', watchTimeoutSeconds: 5 });
  return {
    runtime,
    image: 'agent-platform/busybox:latest',
    capabilities: { imageCheckedAtCreate: false, logsKeptAcrossRestarts: false },
    async cleanup() {
      await runtime.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
