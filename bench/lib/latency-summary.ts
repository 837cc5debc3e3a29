/** Order statistics of a sample of latencies, all in milliseconds. */
export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
}

/**
 * The p-th percentile (0-100) of an ascending sample, by linear interpolation between
 * the closest ranks (the "R-7" definition numpy and spreadsheets use by default). With
 * 30 samples p99 is close to the maximum: report the sample size next to it.
 */
export function percentile(sortedMs: readonly number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN;
  if (p <= 0) return sortedMs[0]!;
  if (p >= 100) return sortedMs[sortedMs.length - 1]!;
  const rank = (p / 100) * (sortedMs.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sortedMs[lo]! + (sortedMs[hi]! - sortedMs[lo]!) * (rank - lo);
}

export function summarize(samplesMs: readonly number[]): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const sum = sorted.reduce((s, v) => s + v, 0);
  return {
    count: sorted.length,
    p50Ms: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
    meanMs: sorted.length ? sum / sorted.length : Number.NaN,
    minMs: sorted[0] ?? Number.NaN,
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
  };
}
