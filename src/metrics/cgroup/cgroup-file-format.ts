import { CgroupParseError } from './cgroup-parse-error.js';

/**
 * Parsers for the two file shapes cgroup interface files use (kernel
 * Documentation/admin-guide/cgroup-v2.rst, "Interface Files"): a single value, and
 * "flat keyed" lines of `key value`. Pure: they take file contents, so tests run on
 * recorded files.
 */

/** Parses a single-value file; `max` (v2 "no limit") becomes Infinity. */
export function parseSingleValue(content: string, file: string): number {
  const text = content.trim();
  if (text === 'max') return Infinity;
  // Number('') is 0: reject empty files explicitly rather than report a zero reading.
  if (text === '' || !/^-?\d+$/.test(text)) throw new CgroupParseError(file, `expected one integer, got ${JSON.stringify(text.slice(0, 40))}`);
  return Number(text);
}

/** Parses a flat-keyed file (`key value` per line) into a map; values stay numbers. */
export function parseFlatKeyed(content: string, file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of content.split('\n')) {
    if (line === '') continue;
    const space = line.indexOf(' ');
    const value = space > 0 ? Number(line.slice(space + 1)) : NaN;
    if (!Number.isFinite(value)) throw new CgroupParseError(file, `bad line ${JSON.stringify(line.slice(0, 60))}`);
    out.set(line.slice(0, space), value);
  }
  return out;
}

/** Reads a key of a flat-keyed map; throws when a key the kernel always writes is missing. */
export function requireKey(map: Map<string, number>, key: string, file: string): number {
  const value = map.get(key);
  if (value === undefined) throw new CgroupParseError(file, `missing key "${key}"`);
  return value;
}
