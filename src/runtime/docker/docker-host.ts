import { InputError } from '../../domain/errors.js';

/** Where a Docker Engine listens, in the shape docker-modem takes. */
export type DockerEndpoint =
  | { kind: 'unix'; socketPath: string }
  | { kind: 'tcp'; host: string; port: number; protocol: 'http' };

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/**
 * Parses a Docker host address (`unix:///path`, `tcp://host:port`, `http://host:port`,
 * or a bare absolute socket path). Empty or undefined means the default socket.
 *
 * We parse DOCKER_HOST ourselves instead of letting docker-modem read the environment,
 * so that one process can drive several daemons (one per node) and a bad value fails
 * loudly here, naming the value, rather than as a confusing connect error later.
 * TLS (`https://`, port 2376) is not supported yet: it throws.
 */
export function parseDockerHost(dockerHost: string | undefined): DockerEndpoint {
  const value = dockerHost?.trim() ?? '';
  if (value === '') return { kind: 'unix', socketPath: DEFAULT_DOCKER_SOCKET };
  if (value.startsWith('/')) return { kind: 'unix', socketPath: value };
  if (value.startsWith('unix://')) {
    const socketPath = value.slice('unix://'.length);
    if (!socketPath.startsWith('/')) {
      throw new InputError(`docker host "${value}" must name an absolute socket path, e.g. unix:///var/run/docker.sock`, {
        dockerHost: value,
      });
    }
    return { kind: 'unix', socketPath };
  }
  const match = /^(tcp|http):\/\/([^/:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})\/?$/.exec(value);
  if (match) {
    const port = Number(match[3]);
    if (port < 1 || port > 65535) {
      throw new InputError(`docker host "${value}" has an invalid port`, { dockerHost: value });
    }
    const host = match[2]!.replace(/^\[|\]$/g, '');
    return { kind: 'tcp', host, port, protocol: 'http' };
  }
  throw new InputError(
    `docker host "${value}" is not supported; use unix:///path/to/docker.sock or tcp://host:port (TLS is not supported)`,
    { dockerHost: value },
  );
}

/** A short printable form for logs and error details. */
export function formatDockerEndpoint(endpoint: DockerEndpoint): string {
  return endpoint.kind === 'unix' ? `unix://${endpoint.socketPath}` : `tcp://${endpoint.host}:${endpoint.port}`;
}
