import { createRequire } from 'node:module';
import type Docker from 'dockerode';

const require = createRequire(import.meta.url);
let DockerClient: typeof Docker | undefined;

/**
 * A dockerode client. dockerode is loaded with the first client rather than with the
 * platform: it pulls in gRPC, protobufjs and ssh2 (about 25 MiB of resident memory), which
 * a platform whose nodes are all simulated or Kubernetes never uses.
 */
export function newDockerClient(options: Docker.DockerOptions): Docker {
  DockerClient ??= require('dockerode') as typeof Docker;
  return new DockerClient(options);
}
