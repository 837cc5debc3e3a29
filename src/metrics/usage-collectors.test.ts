/**
 * Which daemon a Docker node's usage collector asks. Each "daemon" here is an HTTP server
 * on a unix socket that answers the two Docker Engine API calls the stats fallback makes
 * (GET /info, GET /containers/{id}/stats) with responses recorded from a real Docker 20.10
 * (src/metrics/cgroup/fixtures), and records which paths it was asked for. The container id
 * has no cgroup on this machine, so every sample must come through a node's own daemon.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../domain/clock.js';
import { silentLogger } from '../domain/logger.js';
import { DockerRuntime } from '../runtime/docker/docker-runtime.js';
import { SimulatedCluster } from '../runtime/simulated/simulated-cluster.js';
import { usageCollectors } from './usage-collectors.js';

const FIXTURES = new URL('./cgroup/fixtures/', import.meta.url);
const STATS = readFileSync(new URL('docker-stats-v1-oneshot.json', FIXTURES), 'utf8');
const CONTAINER = 'f'.repeat(64);

interface FakeDaemon {
  socketPath: string;
  asked: string[];
  server: Server;
}

async function daemon(dir: string, name: string): Promise<FakeDaemon> {
  const asked: string[] = [];
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]!;
    asked.push(path);
    res.setHeader('content-type', 'application/json');
    if (path.endsWith('/info')) res.end(JSON.stringify({ MemTotal: 8 * 1024 ** 3 }));
    else if (path.endsWith(`/containers/${CONTAINER}/stats`)) res.end(STATS);
    else {
      res.statusCode = 404;
      res.end(JSON.stringify({ message: `no such path ${path}` }));
    }
  });
  const socketPath = join(dir, `${name}.sock`);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { socketPath, asked, server };
}

describe('usageCollectors', () => {
  let dir: string;
  let a: FakeDaemon;
  let b: FakeDaemon;
  let fallbackDaemon: FakeDaemon;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ap-usage-collectors-'));
    [a, b, fallbackDaemon] = await Promise.all([daemon(dir, 'a'), daemon(dir, 'b'), daemon(dir, 'default')]);
  });

  afterAll(async () => {
    await Promise.all([a, b, fallbackDaemon].map((d) => new Promise((resolve) => d.server.close(resolve))));
    rmSync(dir, { recursive: true, force: true });
  });

  it('samples each Docker node through its own daemon, never the default DOCKER_HOST', async () => {
    const nodeA = new DockerRuntime({ nodeId: 'a', dockerHost: `unix://${a.socketPath}` });
    const nodeB = new DockerRuntime({ nodeId: 'b', dockerHost: `unix://${b.socketPath}` });
    const collectorFor = usageCollectors({ runtimes: [nodeA, nodeB], defaultDockerHost: `unix://${fallbackDaemon.socketPath}`, clock: systemClock, logger: silentLogger });

    const fromB = await collectorFor(nodeB)!.collect([CONTAINER]);
    expect(b.asked).toContain(`/containers/${CONTAINER}/stats`);
    expect(a.asked).toEqual([]);
    expect(fallbackDaemon.asked).toEqual([]);
    // The recorded response: 0.5 CPU busy loop with 32 MiB of shmem, 128 MiB limit.
    expect(fromB.get(CONTAINER)?.memoryLimitBytes).toBe(128 * 1024 * 1024);

    await collectorFor(nodeA)!.collect([CONTAINER]);
    expect(a.asked).toContain(`/containers/${CONTAINER}/stats`);
    expect(fallbackDaemon.asked).toEqual([]);
    // One collector per node, kept.
    expect(collectorFor(nodeA)).toBe(collectorFor(nodeA));
    expect(collectorFor(nodeA)).not.toBe(collectorFor(nodeB));
  });

  it('uses the default daemon for a Docker-driver runtime it cannot see into, and nothing for simulated nodes', async () => {
    const [simulated] = new SimulatedCluster({ nodes: 1 }).runtimes();
    const wrapped = { ...simulated!, driver: 'docker', nodeId: 'wrapped' } as unknown as DockerRuntime;
    const collectorFor = usageCollectors({ runtimes: [simulated!], defaultDockerHost: `unix://${fallbackDaemon.socketPath}`, clock: systemClock, logger: silentLogger });
    expect(collectorFor(simulated!)).toBeUndefined();
    await collectorFor(wrapped)!.collect([CONTAINER]);
    expect(fallbackDaemon.asked).toContain(`/containers/${CONTAINER}/stats`);
  });
});
