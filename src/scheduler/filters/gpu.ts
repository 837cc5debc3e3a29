import { REASONS } from '../reasons.js';

/** GPU filter: enough whole devices must be free. Null when the node passes. */
export function gpuFilter(freeGpuCount: number, requestedGpu: number): string | null {
  return requestedGpu > freeGpuCount ? REASONS.insufficientGpu : null;
}

const NUMERIC = /^\d+$/;

/** Device order: numeric ids by value ("2" before "10"), others by code unit, numeric first. */
export function compareGpuIds(a: string, b: string): number {
  const aNum = NUMERIC.test(a);
  const bNum = NUMERIC.test(b);
  if (aNum && bNum) {
    const diff = Number(a) - Number(b);
    if (diff !== 0) return diff;
  } else if (aNum !== bNum) {
    return aNum ? -1 : 1;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The lowest `count` free device ids, so the same state always yields the same devices.
 * `sortedIds` must be sorted with compareGpuIds. Returns fewer ids when not enough are free.
 */
export function pickGpuIds(sortedIds: readonly string[], used: ReadonlySet<string>, count: number): string[] {
  const picked: string[] = [];
  for (const id of sortedIds) {
    if (picked.length === count) break;
    if (!used.has(id)) picked.push(id);
  }
  return picked;
}
