import { describe, expect, it } from 'vitest';
import { formatCpu, formatMemory, parseCpuMillicores, parseMemoryMiB } from './quantity.js';
import { InputError } from './errors.js';

describe('parseCpuMillicores', () => {
  it.each([
    ['100m', 100],
    ['0.5', 500],
    ['2', 2000],
    ['.25', 250],
    ['1500m', 1500],
    [1, 1000],
    [0.1, 100],
    ['0.0001', 1],
  ] as const)('%s -> %d', (input, expected) => {
    expect(parseCpuMillicores(input)).toBe(expected);
  });

  it.each(['abc', '12x', '-1', '1Gi', '', '1 m', '1e3'])('rejects %j with a message naming the field', (input) => {
    expect(() => parseCpuMillicores(input, 'resources.cpu')).toThrow(InputError);
    expect(() => parseCpuMillicores(input, 'resources.cpu')).toThrow(/resources\.cpu/);
  });
  it('rejects negative and non-finite numbers', () => {
    expect(() => parseCpuMillicores(-1)).toThrow(InputError);
    expect(() => parseCpuMillicores(Number.POSITIVE_INFINITY)).toThrow(InputError);
  });
});

describe('parseMemoryMiB', () => {
  it.each([
    ['128Mi', 128],
    ['1Gi', 1024],
    ['0.5Gi', 512],
    ['1024Ki', 1],
    ['1Ti', 1024 * 1024],
    ['500M', 477],
    ['1G', 954],
    ['134217728', 128],
    [134217728, 128],
    ['1', 1],
  ] as const)('%s -> %d', (input, expected) => {
    expect(parseMemoryMiB(input)).toBe(expected);
  });
  it.each(['128MB', 'lots', '1mi', '-5Mi', 'Mi'])('rejects %j', (input) => {
    expect(() => parseMemoryMiB(input)).toThrow(InputError);
  });
});

describe('formatting', () => {
  it('round-trips the common cases', () => {
    expect(formatCpu(100)).toBe('100m');
    expect(formatCpu(2000)).toBe('2');
    expect(formatMemory(128)).toBe('128Mi');
    expect(formatMemory(2048)).toBe('2Gi');
    for (const q of ['250m', '3', '64Mi', '4Gi']) {
      const back = q.endsWith('i') ? formatMemory(parseMemoryMiB(q)) : formatCpu(parseCpuMillicores(q));
      expect(back).toBe(q);
    }
  });
});
