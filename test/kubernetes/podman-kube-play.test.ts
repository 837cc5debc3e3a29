import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildPodManifest } from '../../src/runtime/kubernetes/pod-manifest.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../helpers/busybox-image.js';
import { isCI, requireDocker } from '../helpers/require-docker.js';
import { shellSpec, waitFor } from '../conformance/runtime-conformance.js';
import { validateKubeObject } from './validate-kube-object.js';

const exec = promisify(execFile);

/**
 * The Pod manifests the Kubernetes runtime generates, run for real: no kubelet runs on
 * these machines, but `podman kube play` (Debian's podman 4.3 + catatonit, set up by
 * scripts/ensure-podman.sh) runs a Pod manifest with its security context and limits. The
 * checks run inside the container and print what they find.
 */
async function podmanAvailable(): Promise<boolean> {
  try {
    await exec('podman', ['info', '--format', '{{.Host.OCIRuntime.Name}}'], { timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

const hasDocker = await requireDocker();
const hasPodman = await podmanAvailable();
if (!hasPodman && isCI) throw new Error('CI=true but podman does not work; run scripts/ensure-podman.sh (make test does)');

/** Pipes `docker save IMAGE` into `podman load`: the image then exists locally as localhost/IMAGE. */
async function copyImageToPodman(image: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'pipe'] });
    const load = spawn('podman', ['load', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let errors = '';
    save.stderr.on('data', (d: Buffer) => (errors += d.toString()));
    load.stderr.on('data', (d: Buffer) => (errors += d.toString()));
    save.stdout.pipe(load.stdin);
    save.on('error', reject);
    load.on('error', reject);
    load.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`podman load failed (${code}): ${errors}`))));
  });
}

describe.skipIf(!hasDocker || !hasPodman)('generated Pod manifest under podman kube play', () => {
  const agentId = `podman-${randomBytes(3).toString('hex')}`;
  let dir: string;
  let manifestPath: string;
  let output: string;
  let exitCode: number;

  beforeAll(async () => {
    await ensureBusyboxImage();
    await copyImageToPodman(BUSYBOX_IMAGE);
    dir = await mkdtemp(join(tmpdir(), 'podman-kube-'));
    const script = [
      'echo uid=$(id -u) gid=$(id -g)',
      'if touch /rootfs-probe 2>/dev/null; then echo rootfs=writable; else echo rootfs=readonly; fi',
      'grep CapEff /proc/self/status',
      'echo memlimit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)',
      'touch /tmp/probe && echo tmp=writable',
      'touch /data/probe && echo data=writable',
      // A 200 MiB buffer, touched by the read, in a 64 MiB container: the kernel kills dd.
      'dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; echo dd-exit=$?',
      'echo done',
    ].join('; ');
    const pod = buildPodManifest(shellSpec(agentId, `localhost/${BUSYBOX_IMAGE}`, script, { memoryLimitMiB: 64 }), {
      held: false,
      // podman names a loaded image localhost/NAME and must not try a registry.
      imagePullPolicy: 'Never',
    });
    validateKubeObject(pod);
    manifestPath = join(dir, 'pod.yaml');
    await writeFile(manifestPath, stringify(pod));
    await exec('podman', ['kube', 'play', manifestPath], { timeout: 120_000 });
    const container = `${pod.metadata!.name}-agent`;
    exitCode = await waitFor(
      'the agent container to exit',
      async () => {
        const { stdout } = await exec('podman', ['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', container]);
        const [status, code] = stdout.trim().split(' ');
        return status === 'exited' ? Number(code) : undefined;
      },
      60_000,
    );
    output = (await exec('podman', ['logs', container])).stdout;
  }, 180_000);

  afterAll(async () => {
    if (manifestPath) await exec('podman', ['kube', 'down', manifestPath]).catch(() => undefined);
    await exec('podman', ['pod', 'rm', '-f', `ap-${agentId}`]).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('runs the whole script', () => {
    expect(output).toContain('done');
    expect(exitCode).toBe(0);
  });

  it('runs as uid and gid 1000', () => {
    expect(output).toContain('uid=1000 gid=1000');
  });

  it('has a read-only root filesystem but writable /tmp and /data', () => {
    expect(output).toContain('rootfs=readonly');
    expect(output).toContain('tmp=writable');
    expect(output).toContain('data=writable');
  });

  it('has no effective capabilities', () => {
    expect(output).toMatch(/CapEff:\s+0000000000000000/);
  });

  it('enforces the memory limit: 64 MiB in the cgroup, and a bigger allocation is killed', () => {
    expect(output).toContain(`memlimit=${64 * 1024 * 1024}`);
    expect(output).toContain('dd-exit=137');
  });
});
