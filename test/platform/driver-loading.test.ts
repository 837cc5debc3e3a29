import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./driver-loading-child.ts', import.meta.url));

describe('driver modules load with the first node that needs them', () => {
  it('a pool of simulated nodes never loads the Docker client (dockerode, ssh2, gRPC: about 12 MiB resident)', async () => {
    // Its own process: the module cache is process-wide.
    const { stdout } = await run(process.execPath, ['--import', 'tsx', CHILD], { timeout: 60_000 });
    const out = JSON.parse(stdout) as { phase: string; modules: string[] };
    expect(out.phase).toBe('Running');
    // The child did load CommonJS dependencies, so an empty list would not pass by accident.
    expect(out.modules).toContain('better-sqlite3');
    for (const name of ['dockerode', 'docker-modem', 'ssh2', '@grpc/grpc-js']) expect(out.modules).not.toContain(name);
  }, 90_000);
});
