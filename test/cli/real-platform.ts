import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import { run } from '../../src/cli/agentctl.js';
import { loadConfig, type Config } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { DockerRuntime } from '../../src/runtime/docker/docker-runtime.js';
import { AGENT_ID_LABEL } from '../../src/runtime/runtime.js';
import { ScopedRuntime } from '../integration/scoped-runtime.js';

/** What one agentctl run printed and returned. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Merged over the defaults (HOME, AGENTCTL_SERVER, AGENTCTL_TOKEN of this platform). */
  env?: Record<string, string>;
  /** Fed to `-f -`. */
  stdin?: string;
  signal?: AbortSignal;
}

/** Short intervals so phases move in hundreds of milliseconds, not the production seconds. */
const FAST_ENV: Record<string, string> = {
  AGENT_PLATFORM_PORT: '0',
  AGENT_PLATFORM_HOST: '127.0.0.1',
  AGENT_PLATFORM_LOG_LEVEL: 'silent',
  AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
  AGENT_PLATFORM_STOP_GRACE_MS: '1000',
  AGENT_PLATFORM_START_TIMEOUT_MS: '60000',
};

/** A writable that keeps what is written, for in-process CLI runs. */
export function textSink(): { stream: { write(chunk: string | Uint8Array): boolean; isTTY: boolean }; text(): string } {
  const chunks: string[] = [];
  return {
    stream: {
      write: (c: string | Uint8Array) => (chunks.push(typeof c === 'string' ? c : Buffer.from(c).toString('utf8')), true),
      isTTY: false,
    },
    text: () => chunks.join(''),
  };
}

/**
 * The real platform (buildPlatform: Fastify API, SQLite in a temp dir, the agent
 * controller and the Docker runtime against the local dockerd) on a random loopback
 * port, plus an agentctl runner pointed at it.
 *
 * The runtime is wrapped in ScopedRuntime: the controller's orphan sweep removes every
 * managed container whose agent is not in *its* store, and other test files run their own
 * platforms on the same dockerd at the same time. Agents are learned from the platform's
 * own event bus (the Created event is published before the controller creates a
 * container), so agents created through agentctl are in scope too.
 */
export class RealPlatform {
  readonly docker: Docker;

  private constructor(
    /** Every agent id this platform recorded an event for: the runtime's scope; cleaned up on close. */
    readonly agentIds: Set<string>,
    readonly platform: Platform,
    readonly url: string,
    readonly token: string,
    readonly config: Readonly<Config>,
    /** Temp dir: the SQLite data dir's parent and the CLI's HOME (no real config leaks in). */
    readonly dir: string,
    private readonly unsubscribe: () => void,
  ) {
    this.docker = new Docker(config.dockerHost?.startsWith('unix://') ? { socketPath: config.dockerHost.slice('unix://'.length) } : undefined);
  }

  static async start(env: Record<string, string> = {}): Promise<RealPlatform> {
    const dir = await mkdtemp(join(tmpdir(), 'agentctl-real-'));
    const token = `cli_${randomBytes(16).toString('hex')}`;
    const config = loadConfig({ ...FAST_ENV, AGENT_PLATFORM_DATA_DIR: join(dir, 'data'), AGENT_PLATFORM_ADMIN_TOKEN: token, DOCKER_HOST: process.env.DOCKER_HOST, ...env });
    const ids = new Set<string>();
    const runtime = new ScopedRuntime(new DockerRuntime({ nodeId: config.nodeName, dockerHost: config.dockerHost }), (id) => ids.has(id));
    const platform = await buildPlatform(config, { runtimes: [runtime] });
    const unsubscribe = platform.bus.subscribe((e) => {
      if (e.objectKind === 'Agent') ids.add(e.objectId);
    });
    const address = await platform.start();
    return new RealPlatform(ids, platform, address.replace('[::1]', '127.0.0.1'), token, config, dir, unsubscribe);
  }

  /** Runs agentctl in-process (the same `run()` bin/agentctl.js calls) against this platform. */
  async cli(args: string[], options: CliRunOptions = {}): Promise<CliResult> {
    const out = textSink();
    const err = textSink();
    const code = await run(args, {
      stdout: out.stream,
      stderr: err.stream,
      env: { HOME: this.dir, AGENTCTL_SERVER: this.url, AGENTCTL_TOKEN: this.token, ...options.env },
      stdin: options.stdin === undefined ? undefined : Readable.from([Buffer.from(options.stdin)]),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return { code, stdout: out.text(), stderr: err.text() };
  }

  /** Containers (running or not) of one agent, straight from dockerd. */
  async containersOf(agentId: string): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: { label: [`${AGENT_ID_LABEL}=${agentId}`] } });
  }

  /** Stops the platform, force-removes every container of its agents, deletes the temp dir. */
  async close(): Promise<void> {
    this.unsubscribe();
    try {
      await this.platform.close();
    } finally {
      await Promise.allSettled(
        [...this.agentIds].map(async (id) => {
          for (const c of await this.containersOf(id)) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
        }),
      );
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}

/** Fails (does not skip) when an image the tests need is missing: that is a setup bug. */
export async function requireImage(docker: Docker, image: string): Promise<void> {
  try {
    await docker.getImage(image).inspect();
  } catch {
    throw new Error(`image ${image} is missing on the Docker daemon; build it with \`make images\` (scripts/build-images.sh)`);
  }
}
