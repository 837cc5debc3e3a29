import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { formatAge, formatDurationMs, parseDurationMs, toSinceParam } from './duration.js';

describe('parseDurationMs', () => {
  it.each([
    ['500ms', 500],
    ['60s', 60_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1_500],
    ['1d', 86_400_000],
    ['0', 0],
  ])('%s -> %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each(['', '60', 'abc', '5 m', '5x', 'm5', '1h 30m', '-5s'])('rejects %j and names the flag', (text) => {
    expect(() => parseDurationMs(text, '--timeout')).toThrow(/--timeout/);
  });

  it('says the unit is missing for a bare number', () => {
    expect(() => parseDurationMs('60')).toThrow(/missing unit/);
  });

  it('is additive over concatenated parts', () => {
    fc.assert(
      fc.property(fc.nat(99), fc.nat(59), fc.nat(59), (h, m, s) => {
        expect(parseDurationMs(`${h}h${m}m${s}s`)).toBe(((h * 60 + m) * 60 + s) * 1000);
      }),
    );
  });
});

describe('formatAge', () => {
  it.each([
    [0, '0s'],
    [5_000, '5s'],
    [59_999, '59s'],
    [60_000, '1m'],
    [3 * 60_000 + 59_000, '3m'],
    [2 * 3_600_000, '2h'],
    [23 * 3_600_000, '23h'],
    [4 * 86_400_000, '4d'],
    [400 * 86_400_000, '1y'],
    [-500, '0s'],
    [-5_000, '<invalid>'],
  ])('%d ms -> %s', (ms, text) => {
    expect(formatAge(ms)).toBe(text);
  });
});

describe('formatDurationMs', () => {
  it.each([
    [250, '250ms'],
    [1_500, '1.5s'],
    [60_000, '1m0s'],
    [3_725_000, '1h2m5s'],
  ])('%d -> %s', (ms, text) => {
    expect(formatDurationMs(ms)).toBe(text);
  });
});

describe('toSinceParam', () => {
  it('normalises durations to whole seconds, which the server accepts', () => {
    expect(toSinceParam('10m')).toBe('600s');
    expect(toSinceParam('1h30m')).toBe('5400s');
    expect(toSinceParam('500ms')).toBe('1s');
  });
  it('passes RFC 3339 times through as UTC', () => {
    expect(toSinceParam('2026-01-02T03:04:05+01:00')).toBe('2026-01-02T02:04:05.000Z');
  });
  it('rejects anything else', () => {
    expect(() => toSinceParam('yesterday')).toThrow(/--since/);
    expect(() => toSinceParam('10')).toThrow(/missing unit/);
  });
});
