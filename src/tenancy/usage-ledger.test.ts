import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { UsageRecord } from '../store/store.js';
import { accrualStep, apportion, buildUsageReport, costMicros, microsToString, quantitiesOf, usageReportCsv, zeroAmounts, type Rates } from './usage-ledger.js';

const rates: Rates = { currency: 'EUR', cpuCoreHourMicros: 40_000n, memoryGiBHourMicros: 5_000n, gpuHourMicros: 1_200_000n };
const rec = (agentId: string, startMs: number, endMs: number, extra: Partial<UsageRecord> = {}): UsageRecord => ({
  tenantId: 't',
  agentId,
  agentName: `name-${agentId}`,
  labels: {},
  startMs,
  endMs,
  cpuMillicores: 500,
  memoryMiB: 1024,
  gpu: 0,
  ...extra,
});

describe('accrualStep', () => {
  it('bills the interval since accrued_until', () => {
    expect(accrualStep(1000, 11_000)).toEqual({ fromMs: 1000, toMs: 11_000, nextAccruedUntil: 11_000 });
  });
  it('a clock that went backwards bills nothing and keeps accrued_until', () => {
    expect(accrualStep(10_000, 4_000)).toMatchObject({ fromMs: 10_000, toMs: 10_000, nextAccruedUntil: 10_000, clamped: { kind: 'backwards', deltaMs: -6_000 } });
  });
  it('a forward jump beyond maxStep bills maxStep and skips the rest', () => {
    expect(accrualStep(0, 10 * 3_600_000, 3_600_000)).toMatchObject({ fromMs: 0, toMs: 3_600_000, nextAccruedUntil: 36_000_000, clamped: { kind: 'forward' } });
  });
});

describe('usage report', () => {
  it('known run times give known quantities and costs', () => {
    // One hour of 0.5 core and 1 GiB: 1800 core-seconds, 3600 GiB-seconds.
    const r = buildUsageReport([rec('a', 0, 3_600_000)], { fromMs: 0, toMs: 10 * 3_600_000, groupBy: 'agent', rates });
    expect(quantitiesOf(r.total.amounts)).toMatchObject({ runSeconds: 3600, cpuCoreSeconds: 1800, memoryGiBSeconds: 3600, gpuSeconds: 0 });
    // 0.5 * 0.04 + 1 * 0.005 = 0.025
    expect(microsToString(r.total.costMicros)).toBe('0.025000');
  });

  it('clips to [from, to) and prorates used CPU', () => {
    const r = buildUsageReport([rec('a', 0, 10_000, { usedCpuMicros: 4_000_000 })], { fromMs: 5_000, toMs: 7_500, groupBy: 'agent', rates });
    expect(quantitiesOf(r.total.amounts)).toMatchObject({ runSeconds: 2.5, usedCpuSeconds: 1 });
  });

  it('used CPU sums the intervals that had a counter; null when none had', () => {
    const r = buildUsageReport([rec('a', 0, 1000, { usedCpuMicros: 500_000 }), rec('a', 1000, 2000), rec('b', 0, 1000)], { fromMs: 0, toMs: 2000, groupBy: 'agent', rates });
    expect(quantitiesOf(r.rows[0]!.amounts).usedCpuSeconds).toBe(0.5);
    expect(quantitiesOf(r.rows[1]!.amounts).usedCpuSeconds).toBeNull();
    expect(quantitiesOf(r.total.amounts).usedCpuSeconds).toBe(0.5);
  });

  it('groups by day split at UTC midnight', () => {
    const midnight = Date.UTC(2026, 0, 2);
    const r = buildUsageReport([rec('a', midnight - 60_000, midnight + 120_000)], { fromMs: 0, toMs: midnight * 2, groupBy: 'day', rates });
    expect(r.rows.map((x) => [x.key, quantitiesOf(x.amounts).runSeconds])).toEqual([
      ['2026-01-01', 60],
      ['2026-01-02', 120],
    ]);
  });

  it('groups by label; agents without it fall under ""', () => {
    const r = buildUsageReport([rec('a', 0, 1000, { labels: { team: 'ml' } }), rec('b', 0, 1000)], { fromMs: 0, toMs: 1000, groupBy: 'label', label: 'team', rates });
    expect(r.rows.map((x) => x.key)).toEqual(['', 'ml']);
  });

  it('property: row costs add up to the total exactly, whatever the grouping', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ agent: fc.constantFrom('a', 'b', 'c', 'd'), start: fc.integer({ min: 0, max: 5 * 86_400_000 }), len: fc.integer({ min: 1, max: 86_400_000 }), cpu: fc.integer({ min: 1, max: 7777 }), mem: fc.integer({ min: 6, max: 9999 }), gpu: fc.integer({ min: 0, max: 3 }) }), { maxLength: 40 }),
        (xs) => {
          const records = xs.map((x) => rec(x.agent, x.start, x.start + x.len, { cpuMillicores: x.cpu, memoryMiB: x.mem, gpu: x.gpu, labels: { team: x.agent === 'a' ? 'x' : 'y' } }));
          const totals = new Set<bigint>();
          for (const groupBy of ['agent', 'day', 'label'] as const) {
            const r = buildUsageReport(records, { fromMs: 3_600_000, toMs: 4 * 86_400_000, groupBy, label: 'team', rates });
            expect(r.rows.reduce((s, x) => s + x.costMicros, 0n)).toBe(r.total.costMicros);
            expect(r.rows.reduce((s, x) => s + x.amounts.cpuMillicoreMs, 0n)).toBe(r.total.amounts.cpuMillicoreMs);
            totals.add(r.total.costMicros);
          }
          expect(totals.size).toBeLessThanOrEqual(1);
        },
      ),
    );
  });

  it('apportion hands leftover units to the largest remainders', () => {
    expect(apportion([5n, 5n, 5n], 10n, 2n)).toEqual([1n, 1n, 0n]);
    expect(apportion([19n, 1n], 10n, 2n)).toEqual([2n, 0n]);
  });

  it('cost rounds half up to a micro-unit', () => {
    const a = zeroAmounts();
    a.gpuMs = 3n; // 3 ms of a 1.2/h GPU = 0.000001 exactly
    expect(costMicros(a, rates)).toBe(1n);
  });

  it('CSV has a header, one line per row and a total line', () => {
    const csv = usageReportCsv(buildUsageReport([rec('a', 0, 3_600_000), rec('b', 0, 1_800_000)], { fromMs: 0, toMs: 3_600_000, groupBy: 'agent', rates }));
    const lines = csv.trim().split('\r\n');
    expect(lines[0]).toBe('agent,name,runSeconds,cpuCoreSeconds,memoryGiBSeconds,gpuSeconds,usedCpuSeconds,cost,currency');
    expect(lines).toHaveLength(4);
    expect(lines[3]).toBe('total,,5400,2700,5400,0,,0.037500,EUR');
  });
});
