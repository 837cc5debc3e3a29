import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./heap-growth-child.ts', import.meta.url));

/** Peak committed heap of the child with `percent`. */
async function peakHeapMiB(percent: number): Promise<number> {
  const env = { ...process.env, AGENT_PLATFORM_ADMIN_TOKEN: 'heap-growth-test-token' } as NodeJS.ProcessEnv;
  env.AGENT_PLATFORM_HEAP_GROWTH_PERCENT = String(percent);
  // Its own process: the setting is a process-wide V8 flag.
  const { stdout } = await run(process.execPath, ['--import', 'tsx', CHILD], { env, timeout: 60_000 });
  const out = JSON.parse(stdout) as { peakHeapMiB: number; live: number };
  expect(out.live).toBe(250_000);
  return out.peakHeapMiB;
}

describe('AGENT_PLATFORM_HEAP_GROWTH_PERCENT', () => {
  it('bounds how far the heap grows past the live data', async () => {
    // Two explicit settings rather than one against V8's default, whose factor V8 picks
    // from GC and mutator speed (anywhere from 1.1x to 4x). One after the other, so
    // neither disturbs the other's timing.
    const tight = await peakHeapMiB(10);
    const loose = await peakHeapMiB(400);
    // Measured here: about 190 MiB at 10%, 560 MiB at 400%.
    expect(tight).toBeLessThan(loose * 0.7);
  }, 120_000);

  it('is validated like every other setting', () => {
    expect(() => loadConfig({ AGENT_PLATFORM_HEAP_GROWTH_PERCENT: '5' })).toThrow(ConfigError);
    expect(() => loadConfig({ AGENT_PLATFORM_HEAP_GROWTH_PERCENT: 'lots' })).toThrow(/AGENT_PLATFORM_HEAP_GROWTH_PERCENT/);
    expect(() => loadConfig({ AGENT_PLATFORM_HEAP_GROWTH_PERCENT: '500' })).toThrow(/0 \(V8's own heuristic\) or from 10 to 400/);
    expect(loadConfig({ AGENT_PLATFORM_HEAP_GROWTH_PERCENT: '100' }).heapGrowthPercent).toBe(100);
    expect(loadConfig({ AGENT_PLATFORM_HEAP_GROWTH_PERCENT: '0' }).heapGrowthPercent).toBe(0);
    expect(loadConfig({}).heapGrowthPercent).toBe(50);
  });
});
