/**
 * The split benchmarks run, small: bench/store-lifecycle.ts and bench/controller-only.ts print
 * their table with both rows and plausible figures. Speed is what the full runs measure
 * (docs/benchmarks.md); this only keeps the scripts from rotting.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const exec = promisify(execFile);

/** Numbers of the table row that starts with `label`. */
function figures(out: string, label: string): number[] {
  const line = out.split('\n').find((l) => l.startsWith(`| ${label}`));
  expect(line, `row "${label}" in:\n${out}`).toBeDefined();
  return line!
    .split('|')
    .slice(2, -1)
    .map((c) => Number(c.trim()));
}

describe('bench scripts (CI-sized)', () => {
  it('store-lifecycle: the Store port and the bare driver both write 500 agents', async () => {
    const { stdout } = await exec('npx', ['tsx', 'bench/store-lifecycle.ts', '--agents', '500', '--concurrency', '64', '--batch', '64'], { timeout: 120_000 });
    const store = figures(stdout, 'Store port');
    const bare = figures(stdout, 'baseline: bare better-sqlite3');
    for (const [perSecond = 0, micros = 0] of [store, bare]) {
      expect(perSecond).toBeGreaterThan(0);
      expect(micros).toBeGreaterThan(0);
      expect(perSecond * micros).toBeGreaterThan(0.9e6); // agents/s x µs per agent = 1e6
      expect(perSecond * micros).toBeLessThan(1.1e6);
    }
  }, 150_000);

  it('controller-only: 300 agents reach Running on 20 simulated nodes, and the baseline runs', async () => {
    const { stdout } = await exec('npx', ['tsx', 'bench/controller-only.ts', '--agents', '300', '--nodes', '20', '--idle-s', '1'], { timeout: 120_000 });
    expect(figures(stdout, 'controller: Pending -> Running')[0]).toBeGreaterThan(0);
    expect(figures(stdout, 'baseline: the two status writes')[0]).toBeGreaterThan(0);
    expect(stdout).toMatch(/Idle 1 s with 300 agents Running: \d+% of a core/);
  }, 150_000);
});
