import { InputError } from '../domain/errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/y;

/**
 * Parses Go-style durations as kubectl takes them: "500ms", "60s", "2m", "1h30m", "1d".
 * A bare "0" is zero; any other bare number is rejected because "60" is ambiguous
 * (seconds? milliseconds?) and a wrong guess makes a wait silently too short or too long.
 */
export function parseDurationMs(text: string, flag = 'duration'): number {
  const value = text.trim();
  if (value === '0') return 0;
  if (value === '') throw new InputError(`${flag}: empty duration; use e.g. "30s", "2m" or "1h"`, { flag }, 'INVALID_ARGUMENT');
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < value.length) {
    const at = PART.lastIndex;
    const m = PART.exec(value);
    if (!m) {
      const hint = /^[0-9.]+$/.test(value) ? ' (missing unit)' : '';
      throw new InputError(`${flag}: "${text}" is not a duration${hint}; use e.g. "30s", "2m" or "1h30m"`, { flag, value: text, at }, 'INVALID_ARGUMENT');
    }
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Math.round(total);
}

/**
 * Age as kubectl prints it (ShortHumanDuration): 5s, 3m, 2h, 4d, 2y. Clock skew that puts
 * the time slightly in the future shows as 0s rather than a negative age.
 */
export function formatAge(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h`;
  if (hours < 24 * 365) return `${Math.floor(hours / 24)}d`;
  return `${Math.floor(hours / (24 * 365))}y`;
}

/** Human duration for messages: 1500 -> "1.5s", 120000 -> "2m0s". */
export function formatDurationMs(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return h > 0 ? `${h}h${m}m${s}s` : `${m}m${s}s`;
}

/**
 * Turns `--since` into what the logs endpoint accepts: whole seconds ("600s") for a
 * duration, or an RFC 3339 time. Durations are normalised because the server only knows
 * single-unit s/m/h, while people type "1h30m".
 */
export function toSinceParam(text: string): string {
  if (/^[0-9]/.test(text) && !/^[0-9]{4}-/.test(text)) {
    const ms = parseDurationMs(text, '--since');
    return `${Math.max(1, Math.ceil(ms / 1000))}s`;
  }
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new InputError(`--since: "${text}" is neither a duration ("10m") nor an RFC 3339 time`, { flag: '--since', value: text }, 'INVALID_ARGUMENT');
  return new Date(t).toISOString();
}
