import type Docker from 'dockerode';
import { newDockerClient } from '../runtime/docker/docker-client.js';
import type { Logger } from '../domain/logger.js';
import type { DockerEndpoint } from '../runtime/docker/docker-host.js';
import { CgroupCollector } from './cgroup/cgroup-collector.js';
import { createDockerStatsFallback } from './cgroup/docker-stats-fallback.js';

/**
 * The usage collector for one Docker node: cgroup files of this machine first (microseconds
 * per container; found for every daemon on this machine), then the stats API of the node's
 * own daemon at `endpoint` for containers whose cgroup is not here (a remote daemon, the
 * systemd cgroup driver under an unexpected parent).
 */
export function createDockerUsageCollector(endpoint: DockerEndpoint, logger: Logger): CgroupCollector {
  // Every connection key set explicitly so docker-modem does not merge its own reading of
  // DOCKER_HOST and DOCKER_CERT_PATH under the endpoint we parsed.
  const docker = newDockerClient({
    socketPath: endpoint.kind === 'unix' ? endpoint.socketPath : undefined,
    host: endpoint.kind === 'tcp' ? endpoint.host : undefined,
    port: endpoint.kind === 'tcp' ? endpoint.port : undefined,
    protocol: 'http',
    ca: undefined,
    cert: undefined,
    key: undefined,
  } as Docker.DockerOptions);
  return new CgroupCollector({
    fallback: createDockerStatsFallback(docker),
    onError: (containerId, err) => logger.warn({ err, containerId }, 'container usage sample failed'),
  });
}
