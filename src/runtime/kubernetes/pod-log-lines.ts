import type { LogLine } from '../runtime.js';

/**
 * Parses one line of the pod log endpoint read with `timestamps=true`: an RFC 3339
 * (nanosecond) timestamp, one space, the text. Undefined for a line without one (a
 * kubelet never writes such a line, but a proxy might cut one).
 */
export function parseTimestampedLogLine(line: string, stream: LogLine['stream']): LogLine | undefined {
  const space = line.indexOf(' ');
  const stamp = space === -1 ? line : line.slice(0, space);
  const time = Date.parse(stamp);
  if (Number.isNaN(time)) return undefined;
  return { stream, time, text: space === -1 ? '' : line.slice(space + 1) };
}

/**
 * metav1.Time (the `sinceTime` parameter) has whole seconds: ask from the start of the
 * second and drop the earlier lines here, so `sinceMs` keeps millisecond meaning.
 */
export const sinceTimeParam = (sinceMs: number): string => new Date(Math.floor(sinceMs / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/** The last `tail` lines of several streams read whole, ordered by time (stable within a stream). */
export function tailMerged(streams: LogLine[][], tail: number | undefined): LogLine[] {
  const merged = streams
    .flatMap((lines, streamIndex) => lines.map((line, i) => ({ line, streamIndex, i })))
    .sort((a, b) => a.line.time - b.line.time || a.streamIndex - b.streamIndex || a.i - b.i)
    .map((e) => e.line);
  if (tail === undefined) return merged;
  return tail <= 0 ? [] : merged.slice(-tail);
}
