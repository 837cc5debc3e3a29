import { setFlagsFromString } from 'node:v8';

/**
 * Bounds how far the JavaScript heap may grow past the data that survived the last full
 * garbage collection: the next full GC comes once the old generation reaches
 * live x (1 + percent/100). V8's default picks the factor from its own throughput
 * heuristic, up to 4x under a steady allocation load: on the 100,000-agent simulated
 * cluster about 150 MiB of live data peaked at about 600 MiB of heap. A bound keeps the
 * resident size proportional to what the control plane holds, at the price of more
 * frequent full collections (docs/benchmarks.md has both figures). Unlike a fixed
 * --max-old-space-size it cannot run out of heap when the live data grows. The platform's
 * default, 50%, sits between V8's up-to-300% and the 100% of Go's default GOGC.
 *
 * Process wide (a V8 flag), and read by V8 at every full GC, so it applies from the next
 * one on. NODE_OPTIONS does not accept this flag, hence a setting of the platform.
 */
export function applyHeapGrowthPercent(percent: number): void {
  // 0 is V8's own default of the flag: its dynamic factor.
  setFlagsFromString(`--heap-growing-percent=${Math.round(percent)}`);
}
