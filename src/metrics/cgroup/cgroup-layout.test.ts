import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { detectCgroupLayout } from './cgroup-layout.js';

const fixtures = fileURLToPath(new URL('./fixtures', import.meta.url));
const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cgroup-layout-'));
  temps.push(dir);
  return dir;
}

describe('detectCgroupLayout', () => {
  it('finds separately mounted v1 controllers', () => {
    const root = join(fixtures, 'v1');
    expect(detectCgroupLayout(root)).toEqual({
      version: 1,
      controllerDirs: { cpu: join(root, 'cpu'), cpuacct: join(root, 'cpuacct'), memory: join(root, 'memory'), pids: join(root, 'pids') },
    });
  });

  it('finds a combined cpu,cpuacct mount and tolerates a missing pids controller', () => {
    const root = tempRoot();
    mkdirSync(join(root, 'cpu,cpuacct'));
    mkdirSync(join(root, 'memory'));
    mkdirSync(join(root, 'unified')); // hybrid: a v2 mount without controllers is still v1
    writeFileSync(join(root, 'unified', 'cgroup.controllers'), '\n');
    expect(detectCgroupLayout(root)).toEqual({
      version: 1,
      controllerDirs: { cpu: join(root, 'cpu,cpuacct'), cpuacct: join(root, 'cpu,cpuacct'), memory: join(root, 'memory'), pids: null },
    });
  });

  it('recognises the unified hierarchy by cgroup.controllers at the root', () => {
    expect(detectCgroupLayout(join(fixtures, 'v2'))).toEqual({ version: 2, root: join(fixtures, 'v2') });
  });

  it('says none when there is no cgroup filesystem', () => {
    expect(detectCgroupLayout(tempRoot())).toEqual({ version: 'none' });
    expect(detectCgroupLayout('/does/not/exist')).toEqual({ version: 'none' });
  });
});
