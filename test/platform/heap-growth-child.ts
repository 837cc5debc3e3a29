// Child of heap-growth.test.ts: applies AGENT_PLATFORM_HEAP_GROWTH_PERCENT as the platform
// does, then churns through objects with about 250,000 kept alive and prints the largest
// heap V8 committed meanwhile.
import { loadConfig } from '../../src/config.js';
import { applyHeapGrowthPercent } from '../../src/heap-growth.js';

applyHeapGrowthPercent(loadConfig(process.env).heapGrowthPercent);
const LIVE = 250_000;
// A ring: each new object replaces the oldest, which becomes garbage.
const live: unknown[] = new Array(LIVE).fill(null);
let peak = 0;
for (let i = 0; i < 1_200_000; i++) {
  live[i % LIVE] = { id: `agent-${i}-${'x'.repeat(20)}`, data: new Array(20).fill(i) };
  if (i % 1000 === 0) peak = Math.max(peak, process.memoryUsage().heapTotal);
}
process.stdout.write(JSON.stringify({ peakHeapMiB: peak / 1048576, live: live.filter((x) => x !== null).length }));
