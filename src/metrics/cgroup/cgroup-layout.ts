import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupV1Controller } from './cgroup-v1.js';

/**
 * How the host mounts cgroups, found once per collector:
 * - v2: one unified hierarchy at the root (the root holds cgroup.controllers);
 * - v1 (including "hybrid", where /sys/fs/cgroup/unified exists but owns no controllers):
 *   one mount per controller, sometimes combined as `cpu,cpuacct`;
 * - none: no cgroup filesystem we can read (Docker Desktop, a remote Docker host); every
 *   container then goes to the fallback.
 */
export type CgroupLayout =
  | { version: 2; root: string }
  | { version: 1; controllerDirs: Readonly<Record<CgroupV1Controller, string | null>> }
  | { version: 'none' };

const V1_CONTROLLERS: readonly CgroupV1Controller[] = ['cpu', 'cpuacct', 'memory', 'pids'];

/** Looks at `cgroupRoot` (usually /sys/fs/cgroup) and says which layout it holds. */
export function detectCgroupLayout(cgroupRoot: string): CgroupLayout {
  if (existsSync(join(cgroupRoot, 'cgroup.controllers'))) return { version: 2, root: cgroupRoot };
  const dirs = {} as Record<CgroupV1Controller, string | null>;
  for (const controller of V1_CONTROLLERS) {
    // systemd hosts mount `cpu,cpuacct` and symlink `cpu` and `cpuacct` to it; other hosts
    // (this one) mount them separately. Try the plain name first, then the combined mounts.
    const candidates = [controller, 'cpu,cpuacct', 'cpuacct,cpu'].filter((name) => name === controller || name.includes(controller));
    dirs[controller] = candidates.map((name) => join(cgroupRoot, name)).find((dir) => existsSync(dir)) ?? null;
  }
  if (dirs.memory === null || dirs.cpuacct === null || dirs.cpu === null) return { version: 'none' };
  return { version: 1, controllerDirs: dirs };
}
