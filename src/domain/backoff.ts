/** Restart backoff: 1 s doubling to 5 min, as the kubelet's CrashLoopBackOff. */
export const BACKOFF_INITIAL_MS = 1_000;
export const BACKOFF_MAX_MS = 300_000;

export function restartBackoffMs(restarts: number, initialMs = BACKOFF_INITIAL_MS, maxMs = BACKOFF_MAX_MS): number {
  if (restarts <= 0) return initialMs;
  return Math.min(maxMs, initialMs * 2 ** Math.min(restarts, 30));
}
