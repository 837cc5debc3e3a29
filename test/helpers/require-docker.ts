import { request } from 'node:http';
import { parseDockerHost } from '../../src/runtime/docker/docker-host.js';

/** True when CI=true: then a missing service fails the tests instead of skipping them. */
export const isCI = process.env.CI === 'true';

/**
 * Whether a Docker daemon answers GET /_ping at `dockerHost` (default: DOCKER_HOST or
 * /var/run/docker.sock) within `timeoutMs`. Never throws.
 */
export async function dockerAvailable(dockerHost = process.env.DOCKER_HOST, timeoutMs = 2_000): Promise<boolean> {
  let endpoint;
  try {
    endpoint = parseDockerHost(dockerHost);
  } catch {
    return false;
  }
  const target = endpoint.kind === 'unix' ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port };
  return new Promise<boolean>((resolve) => {
    const req = request({ ...target, path: '/_ping', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/**
 * Gate for a test file that needs Docker. Returns true when Docker is reachable;
 * false (skip) when it is not and CI is not set; throws when CI=true and Docker is
 * missing, so the file fails. Use with top-level await:
 *
 * ```ts
 * const hasDocker = await requireDocker();
 * describe.skipIf(!hasDocker)('docker runtime', () => { ... });
 * ```
 */
export async function requireDocker(dockerHost = process.env.DOCKER_HOST): Promise<boolean> {
  if (await dockerAvailable(dockerHost)) return true;
  if (isCI) {
    throw new Error(`CI=true but Docker is not reachable at ${dockerHost ?? 'unix:///var/run/docker.sock'}; start dockerd`);
  }
  return false;
}
