import type Dockerode from 'dockerode';
import type { ContainerUsage, UsageFallback } from './container-usage.js';
import { mapDockerStats, type DockerStatsResponse } from './map-docker-stats.js';

/** Options of {@link createDockerStatsFallback}. */
export interface DockerStatsFallbackOptions {
  /**
   * The Docker host's memory; Docker reports it as the limit of unlimited containers.
   * @default MemTotal from `docker info`, asked once on first use
   */
  hostMemoryBytes?: number;
  /**
   * Ask for a single sample (`one-shot=true`, API >= 1.41). Docker 20.10 answers a stats
   * request with the next sample its collector publishes (every 1 s); without one-shot it
   * skips that first sample to fill precpu_stats and answers a tick later (1-2 s instead of
   * 0-1 s). We report cumulative counters and compute rates ourselves, so precpu is unneeded.
   * @default true
   */
  oneShot?: boolean;
}

/**
 * A UsageFallback backed by Docker's stats API (`container.stats({stream: false})`), for
 * containers whose cgroup files the collector cannot read (remote host, Docker Desktop,
 * unexpected cgroup parent). Resolves to null for containers that do not exist or are not
 * running.
 */
export function createDockerStatsFallback(docker: Dockerode, options: DockerStatsFallbackOptions = {}): UsageFallback {
  const oneShot = options.oneShot ?? true;
  let hostMemory: Promise<number> | undefined =
    options.hostMemoryBytes === undefined ? undefined : Promise.resolve(options.hostMemoryBytes);
  const hostMemoryBytes = (): Promise<number> => {
    hostMemory ??= docker.info().then(
      (info: { MemTotal?: number }) => info.MemTotal ?? Infinity,
      (error: unknown) => {
        hostMemory = undefined; // ask again next time rather than caching a failure
        throw error;
      },
    );
    return hostMemory;
  };

  return async (containerId: string, signal?: AbortSignal): Promise<ContainerUsage | null> => {
    const [memTotal, stats] = await Promise.all([
      hostMemoryBytes(),
      // abortSignal is honoured by docker-modem but missing from @types/dockerode.
      docker
        .getContainer(containerId)
        .stats({ stream: false, 'one-shot': oneShot, abortSignal: signal } as { stream: false; 'one-shot': boolean })
        .catch((error: unknown) => {
          if ((error as { statusCode?: number }).statusCode === 404) return null;
          throw error;
        }),
    ]);
    if (stats === null) return null;
    return mapDockerStats(containerId, stats as DockerStatsResponse, memTotal);
  };
}
