import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { createPrivateBridge, type PrivateBridge } from '../helpers/private-bridge.js';

const exec = promisify(execFile);

/** Whether this process can start dockerd daemons of its own (root and a dockerd binary). */
export function canStartDockerd(): boolean {
  return process.getuid?.() === 0 && ['/usr/sbin/dockerd', '/usr/bin/dockerd', '/usr/local/bin/dockerd'].some((p) => existsSync(p));
}

/**
 * One extra dockerd on this machine, standing for one node: its own data root, exec root,
 * pid file and socket under a fresh /tmp/apd-* directory, its own bridge and no iptables (agents
 * run with --network none). `kill()` is a hard crash (SIGKILL: the socket stops answering),
 * `restart()` brings the same daemon back on the same directories.
 */
export class DockerdNode {
  readonly dockerHost: string;
  readonly docker: Docker;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stderr = '';
  private bridge: PrivateBridge | undefined;

  private constructor(readonly dir: string) {
    this.dockerHost = `unix://${dir}/docker.sock`;
    this.docker = new Docker({ socketPath: `${dir}/docker.sock` });
  }

  /** Starts a daemon and loads `images` into it from the default daemon (docker save | docker load). */
  static async start(images: string[]): Promise<DockerdNode> {
    // Short path: a unix socket path must fit in 108 bytes.
    const node = new DockerdNode(await mkdtemp('/tmp/apd-'));
    try {
      await node.restart();
      for (const image of images) {
        await exec('sh', ['-c', `docker save '${image}' | docker -H '${node.dockerHost}' load -q`], { timeout: 120_000 });
      }
    } catch (err) {
      await node.destroy();
      throw err;
    }
    return node;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** (Re)starts dockerd on this node's directories and waits until it answers. */
  async restart(): Promise<void> {
    if (this.child) return;
    const d = this.dir;
    this.bridge ??= await createPrivateBridge();
    const child = spawn(
      'dockerd',
      ['--data-root', `${d}/root`, '--exec-root', `${d}/exec`, '--pidfile', `${d}/pid`, '-H', this.dockerHost, '--bridge', this.bridge.name, '--iptables=false', '--ip-masq=false'],
      { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.child = child;
    child.stderr?.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-4000);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        if (this.child === child) this.child = undefined;
        resolve();
      }),
    );
    child.unref();
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!this.child) throw new Error(`dockerd in ${d} exited during start: ${this.stderr.trim().split('\n').slice(-5).join('\n')}`);
      try {
        await this.docker.ping();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`dockerd in ${d} did not answer within 30 s: ${this.stderr.trim().split('\n').slice(-5).join('\n')}`);
        await sleep(100);
      }
    }
  }

  /** A crash: SIGKILL to dockerd only (its containerd and containers live on, as on a real host). */
  async kill(): Promise<void> {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Containers of this daemon (all states), with their labels. */
  async containers(): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true });
  }

  /**
   * Removes every container, stops the daemon, kills whatever process still runs from its
   * directories (containerd and shims survive a SIGKILLed dockerd), unmounts and deletes them.
   * Never throws: it runs in afterAll, also after failures.
   */
  async destroy(): Promise<void> {
    if (this.child) {
      try {
        const all = await this.docker.listContainers({ all: true });
        await Promise.all(all.map((c) => this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)));
      } catch {
        // Not answering: stop it anyway.
      }
      this.child.kill('SIGTERM');
      const stopped = await Promise.race([this.exited.then(() => true), sleep(20_000).then(() => false)]);
      if (!stopped) {
        this.child?.kill('SIGKILL');
        await this.exited;
      }
    }
    await killProcessesUnder(this.dir);
    await this.bridge?.remove();
    try {
      const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(this.dir));
      for (const m of mounts.reverse()) await exec('umount', ['-l', m]).catch(() => undefined);
    } catch {
      // Nothing mounted.
    }
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** SIGKILLs the processes whose command line names `dir` (this test's containerd and shims), by pid. */
async function killProcessesUnder(dir: string): Promise<void> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir)) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  await sleep(200);
}
