import { describe, expect, it } from 'vitest';
import { DomainError } from '../../domain/errors.js';
import { parseGoDurationMs, parseKubeQuantity, podUsageFromMetrics, type KubePodMetrics } from './pod-metrics.js';

const Mi = 2 ** 20;

describe('parseKubeQuantity', () => {
  it('reads every suffix metrics-server and the API write, keeping fractions', () => {
    expect(parseKubeQuantity('250m')).toBeCloseTo(0.25, 12);
    expect(parseKubeQuantity('12345n')).toBeCloseTo(0.000012345, 15);
    expect(parseKubeQuantity('1500u')).toBeCloseTo(0.0015, 12);
    expect(parseKubeQuantity('2')).toBe(2);
    expect(parseKubeQuantity('0')).toBe(0);
    expect(parseKubeQuantity('1.5')).toBe(1.5);
    expect(parseKubeQuantity('.5')).toBe(0.5);
    expect(parseKubeQuantity('64Mi')).toBe(64 * Mi);
    expect(parseKubeQuantity('65536Ki')).toBe(64 * Mi);
    expect(parseKubeQuantity('1Gi')).toBe(2 ** 30);
    expect(parseKubeQuantity('1.5G')).toBe(1.5e9);
    expect(parseKubeQuantity('3k')).toBe(3000);
    expect(parseKubeQuantity('2M')).toBe(2e6);
    expect(parseKubeQuantity('1T')).toBe(1e12);
  });

  it('tells the exa suffix "E" from the decimal exponent "E3"', () => {
    expect(parseKubeQuantity('1E')).toBe(1e18);
    expect(parseKubeQuantity('1E3')).toBe(1000);
    expect(parseKubeQuantity('5e-3')).toBeCloseTo(0.005, 12);
    expect(parseKubeQuantity('2e+2')).toBe(200);
  });

  it('rejects what is not a quantity, with a stable code', () => {
    for (const bad of ['', 'm', '1mi', '1 Mi', '1KiB', 'abc', '1.2.3', '--1']) {
      expect(() => parseKubeQuantity(bad), bad).toThrow(DomainError);
    }
    try {
      parseKubeQuantity('1KiB');
    } catch (err) {
      expect((err as DomainError).code).toBe('KUBERNETES_BAD_QUANTITY');
    }
  });
});

describe('parseGoDurationMs', () => {
  it('reads Go durations as metrics-server writes its window', () => {
    expect(parseGoDurationMs('15s')).toBe(15_000);
    expect(parseGoDurationMs('10.042s')).toBeCloseTo(10_042, 9);
    expect(parseGoDurationMs('1m0s')).toBe(60_000);
    expect(parseGoDurationMs('1m30.5s')).toBe(90_500);
    expect(parseGoDurationMs('1h2m')).toBe(3_720_000);
    expect(parseGoDurationMs('250ms')).toBe(250);
    expect(parseGoDurationMs('1500us')).toBe(1.5);
    expect(parseGoDurationMs('0s')).toBe(0);
    expect(parseGoDurationMs('0')).toBe(0);
  });

  it('rejects anything else', () => {
    for (const bad of ['', '15', 's', '15 s', '15sx', '1d', '-1s']) expect(() => parseGoDurationMs(bad), bad).toThrow(/not a Go duration/);
  });
});

describe('podUsageFromMetrics', () => {
  const item = (containers: KubePodMetrics['containers'], extra: Partial<KubePodMetrics> = {}): KubePodMetrics => ({
    metadata: { name: 'ap-a1', namespace: 'ap-default' },
    timestamp: '2026-11-02T10:00:05Z',
    window: '15.012s',
    containers,
    ...extra,
  });

  it('reads the agent container only (a mesh sidecar is not the agent)', () => {
    const sample = podUsageFromMetrics(
      item([
        { name: 'istio-proxy', usage: { cpu: '900m', memory: '500Mi' } },
        { name: 'agent', usage: { cpu: '123456789n', memory: '65536Ki' } },
      ]),
      128 * Mi,
    );
    expect(sample).toEqual({
      podName: 'ap-a1',
      namespace: 'ap-default',
      timestampMs: Date.parse('2026-11-02T10:00:05Z'),
      windowMs: 15_012,
      cpuCores: expect.closeTo(0.123456789, 12),
      memoryWorkingSetBytes: 64 * Mi,
      memoryLimitBytes: 128 * Mi,
    });
  });

  it('is undefined for a Pod without an agent container, and throws naming the Pod for unreadable figures', () => {
    expect(podUsageFromMetrics(item([{ name: 'other', usage: { cpu: '1', memory: '1Mi' } }]))).toBeUndefined();
    expect(() => podUsageFromMetrics(item([{ name: 'agent', usage: { cpu: 'lots', memory: '1Mi' } }]))).toThrow(/ap-default\/ap-a1: cpu/);
    expect(() => podUsageFromMetrics(item([{ name: 'agent', usage: { cpu: '-1', memory: '1Mi' } }]))).toThrow(/cpu is -1/);
    expect(() => podUsageFromMetrics(item([{ name: 'agent', usage: { cpu: '1', memory: '1Mi' } }], { timestamp: 'yesterday' }))).toThrow(/timestamp/);
    expect(() => podUsageFromMetrics(item([{ name: 'agent', usage: { cpu: '1', memory: '1Mi' } }], { window: '15' }))).toThrow(/window/);
    try {
      podUsageFromMetrics(item([{ name: 'agent', usage: { cpu: '1', memory: 'x' } }]));
      expect.unreachable();
    } catch (err) {
      expect((err as DomainError).code).toBe('KUBERNETES_BAD_METRICS');
    }
  });
});
