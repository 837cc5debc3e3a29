import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { createPrivateBridge } from '../helpers/private-bridge.js';

const exec = promisify(execFile);

/** A dockerd of our own: its containers, its sockets, its data root. */
export interface PrivateDockerDaemon {
  /** `unix:///…/d.sock`, for DOCKER_HOST. */
  readonly dockerHost: string;
  readonly socketPath: string;
  readonly docker: Docker;
  /** Removes every container, stops the daemon and deletes its directories. */
  stop(): Promise<void>;
}

/**
 * Whether this process can start a private dockerd (root and a dockerd binary).
 * Tests and benchmarks that look at every container of a daemon (or measure it)
 * should not share it with other tests running at the same time.
 */
export function canStartPrivateDaemon(): boolean {
  return process.getuid?.() === 0 && ['/usr/sbin/dockerd', '/usr/bin/dockerd', '/usr/local/bin/dockerd'].some((p) => existsSync(p));
}

/**
 * Starts `dockerd` on a socket in a fresh directory (its own bridge, no iptables: the
 * platform runs agents with --network none) and copies `images` into it from the
 * daemon at `sourceDockerHost` (docker save | docker load). Ready in about 1-2 s.
 */
export async function startPrivateDockerDaemon(images: string[], sourceDockerHost: string | undefined, signal?: AbortSignal): Promise<PrivateDockerDaemon> {
  // Short path: a unix socket path must fit in 108 bytes.
  const dir = await mkdtemp('/tmp/apd-');
  const socketPath = `${dir}/d.sock`;
  const dockerHost = `unix://${socketPath}`;
  const pidFile = `${dir}/pid`;
  const bridge = await createPrivateBridge();
  const child = spawn(
    'dockerd',
    ['--data-root', `${dir}/data`, '--exec-root', `${dir}/exec`, '--pidfile', pidFile, '-H', dockerHost, '--bridge', bridge.name, '--iptables=false', '--ip-masq=false'],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  child.unref();
  const docker = new Docker({ socketPath });

  const stop = async (): Promise<void> => {
    if (!exited) {
      try {
        const all = await docker.listContainers({ all: true });
        await Promise.all(all.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)));
      } catch {
        // Daemon already unusable; stop it anyway.
      }
      child.kill('SIGTERM');
      const killed = await Promise.race([exitedPromise.then(() => true), sleep(20_000).then(() => false)]);
      if (!killed) child.kill('SIGKILL');
      await exitedPromise;
    }
    await bridge.remove();
    // Mounts left by a daemon that died hard would make rm fail; unmount them first.
    try {
      const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(dir));
      for (const m of mounts.reverse()) await exec('umount', ['-l', m]).catch(() => undefined);
    } catch {
      // Not Linux, or nothing mounted.
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      signal?.throwIfAborted();
      if (exited) throw new Error(`private dockerd exited during start: ${stderr.trim().split('\n').slice(-5).join('\n')}`);
      try {
        await docker.ping();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`private dockerd did not answer within 30 s: ${stderr.trim().split('\n').slice(-5).join('\n')}`);
        await sleep(100);
      }
    }
    const sourceArgs = sourceDockerHost ? ['-H', sourceDockerHost] : [];
    for (const image of images) {
      // A shell pipe is the simplest way to stream save into load.
      await exec('sh', ['-c', `docker ${sourceArgs.map(quote).join(' ')} save ${quote(image)} | docker -H ${quote(dockerHost)} load -q`], { timeout: 120_000, signal });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { dockerHost, socketPath, docker, stop };
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
