import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * CPU time of a Docker container in seconds, straight from its cgroup (v1 cpuacct.usage or
 * v2 cpu.stat): the ground truth the platform's collectors and meter are compared with.
 */
export function cgroupCpuSeconds(containerId: string): number {
  for (const p of [`/sys/fs/cgroup/cpu,cpuacct/docker/${containerId}/cpuacct.usage`, `/sys/fs/cgroup/cpuacct/docker/${containerId}/cpuacct.usage`]) {
    if (existsSync(p)) return Number(readFileSync(p, 'utf8').trim()) / 1e9;
  }
  for (const dir of [`/sys/fs/cgroup/docker/${containerId}`, `/sys/fs/cgroup/system.slice/docker-${containerId}.scope`]) {
    const p = join(dir, 'cpu.stat');
    if (existsSync(p)) {
      const m = /^usage_usec (\d+)$/m.exec(readFileSync(p, 'utf8'));
      if (m) return Number(m[1]) / 1e6;
    }
  }
  throw new Error(`no cgroup CPU accounting found for container ${containerId}`);
}
