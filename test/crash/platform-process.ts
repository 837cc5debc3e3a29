import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** `agent-platform serve` running from source in a child process of its own group. */
export interface PlatformProcess {
  readonly baseUrl: string;
  readonly pid: number;
  /** Last few KB of stderr, for failure messages. */
  output(): string;
  /** SIGKILL to the whole process group (tsx may run the server in a child). */
  kill9(): void;
  /** Resolves when the process has exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** A port nobody listens on right now (the usual small race is acceptable in tests). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Spawns `node --import tsx src/main.ts serve` (no build step) with `env` added to this
 * process's environment, detached so that a kill of the group reaches every process it
 * started, and waits until GET /ready answers 200.
 */
export async function startPlatformProcess(env: Record<string, string>, port: number, readyTimeoutMs = 60_000): Promise<PlatformProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], {
    cwd: REPO_ROOT,
    detached: true,
    env: { ...process.env, AGENT_PLATFORM_PORT: String(port), AGENT_PLATFORM_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (b: Buffer): void => {
    output = (output + b.toString()).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let done = false;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      done = true;
      resolve(code);
    }),
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn the platform process');
  const baseUrl = `http://127.0.0.1:${port}`;

  const kill = (signal: NodeJS.Signals): void => {
    if (done) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // Group already gone.
    }
  };
  const handle: PlatformProcess = {
    baseUrl,
    pid,
    output: () => output,
    kill9: () => kill('SIGKILL'),
    exited,
    async stop(graceMs = 10_000) {
      kill('SIGTERM');
      const gone = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!gone) kill('SIGKILL');
      await exited;
    },
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (done) throw new Error(`platform exited before it was ready:\n${output}`);
    try {
      const res = await fetch(`${baseUrl}/ready`, { signal: AbortSignal.timeout(2_000) });
      if (res.status === 200) return handle;
      await res.body?.cancel();
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      handle.kill9();
      throw new Error(`platform not ready within ${readyTimeoutMs} ms:\n${output}`);
    }
    await sleep(100);
  }
}
