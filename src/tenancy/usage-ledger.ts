import type { UsageRecord } from '../store/store.js';

/**
 * Pure accrual and billing math for the usage ledger. Ledger records hold resources
 * (requests) and an interval; every quantity and price is derived here with integer
 * arithmetic (bigint), so per-row figures add up to the totals exactly.
 */

/**
 * Largest interval one accrual step bills. Longer gaps are taken for a clock jump: billed
 * up to this much, the rest skipped and logged. It also bounds what a control plane that
 * was down longer than this bills for the downtime (the agent ran, but we cannot tell a
 * jump from downtime without a monotonic clock across processes).
 * @default 1 hour
 */
export const DEFAULT_MAX_ACCRUAL_STEP_MS = 3_600_000;

export interface AccrualStep {
  /** Interval to bill; empty (from === to) when nothing accrues. */
  fromMs: number;
  toMs: number;
  /** Where the agent's accrued_until moves to. */
  nextAccruedUntil: number;
  /** Set when the clock went backwards or jumped further than `maxStepMs`. */
  clamped?: { kind: 'backwards' | 'forward'; deltaMs: number } | undefined;
}

/**
 * The step from `accruedUntil` to `nowMs`. Backwards (now before accruedUntil): nothing is
 * billed and accruedUntil stays, so the interval is never billed twice once the clock has
 * caught up. Forward by more than `maxStepMs`: `maxStepMs` is billed and accruedUntil jumps
 * to now, so the jump is not billed.
 */
export function accrualStep(accruedUntil: number, nowMs: number, maxStepMs = DEFAULT_MAX_ACCRUAL_STEP_MS): AccrualStep {
  const delta = nowMs - accruedUntil;
  if (delta < 0) return { fromMs: accruedUntil, toMs: accruedUntil, nextAccruedUntil: accruedUntil, clamped: { kind: 'backwards', deltaMs: delta } };
  if (delta > maxStepMs) return { fromMs: accruedUntil, toMs: accruedUntil + maxStepMs, nextAccruedUntil: nowMs, clamped: { kind: 'forward', deltaMs: delta } };
  return { fromMs: accruedUntil, toMs: nowMs, nextAccruedUntil: nowMs };
}

/** Prices in micro-units of `currency` (1 = 0.000001) per hour. */
export interface Rates {
  currency: string;
  cpuCoreHourMicros: bigint;
  memoryGiBHourMicros: bigint;
  gpuHourMicros: bigint;
}

/** Exact sums in base units: millicore-milliseconds, MiB-milliseconds, GPU-milliseconds. */
export interface UsageAmounts {
  cpuMillicoreMs: bigint;
  memoryMiBMs: bigint;
  gpuMs: bigint;
  runMs: bigint;
  /** Used CPU time (µs) of the intervals that had a runtime counter; `usedCpuKnown` false when none had. */
  usedCpuMicros: bigint;
  usedCpuKnown: boolean;
}

export const zeroAmounts = (): UsageAmounts => ({ cpuMillicoreMs: 0n, memoryMiBMs: 0n, gpuMs: 0n, runMs: 0n, usedCpuMicros: 0n, usedCpuKnown: false });

function addInto(a: UsageAmounts, b: UsageAmounts): void {
  a.cpuMillicoreMs += b.cpuMillicoreMs;
  a.memoryMiBMs += b.memoryMiBMs;
  a.gpuMs += b.gpuMs;
  a.runMs += b.runMs;
  a.usedCpuMicros += b.usedCpuMicros;
  a.usedCpuKnown ||= b.usedCpuKnown;
}

/** The part of `r` inside [fromMs, toMs) as amounts; used CPU is prorated. */
export function amountsOf(r: UsageRecord, fromMs: number, toMs: number): UsageAmounts | undefined {
  const start = Math.max(r.startMs, fromMs);
  const end = Math.min(r.endMs, toMs);
  if (end <= start) return undefined;
  const ms = BigInt(end - start);
  const whole = r.endMs - r.startMs;
  const used =
    r.usedCpuMicros === undefined ? undefined : end - start === whole ? BigInt(r.usedCpuMicros) : (BigInt(r.usedCpuMicros) * ms + BigInt(whole) / 2n) / BigInt(whole);
  return {
    cpuMillicoreMs: BigInt(r.cpuMillicores) * ms,
    memoryMiBMs: BigInt(r.memoryMiB) * ms,
    gpuMs: BigInt(r.gpu) * ms,
    runMs: ms,
    usedCpuMicros: used ?? 0n,
    usedCpuKnown: used !== undefined,
  };
}

// Common denominator of the three prices: cost = numerator / COST_DENOMINATOR micro-units.
// core-hour: millicore-ms / (1000 * 3.6e6); GiB-hour: MiB-ms / (1024 * 3.6e6); GPU-hour: ms / 3.6e6.
const COST_DENOMINATOR = 3_600_000n * 1000n * 1024n;

/** Exact cost numerator (see COST_DENOMINATOR). */
export function costNumerator(a: UsageAmounts, rates: Rates): bigint {
  return a.cpuMillicoreMs * rates.cpuCoreHourMicros * 1024n + a.memoryMiBMs * rates.memoryGiBHourMicros * 1000n + a.gpuMs * rates.gpuHourMicros * 1_024_000n;
}

/** Exact cost rounded half up to a micro-unit. */
export const costMicros = (a: UsageAmounts, rates: Rates): bigint => (costNumerator(a, rates) * 2n + COST_DENOMINATOR) / (2n * COST_DENOMINATOR);

export type GroupBy = 'agent' | 'day' | 'label';

export interface UsageGroup {
  key: string;
  /** Agent name when grouped by agent. */
  name?: string | undefined;
  amounts: UsageAmounts;
  costMicros: bigint;
}

export interface UsageReport {
  fromMs: number;
  toMs: number;
  groupBy: GroupBy;
  rows: UsageGroup[];
  total: { amounts: UsageAmounts; costMicros: bigint };
  currency: string;
}

const DAY_MS = 86_400_000;

/**
 * Groups records clipped to [fromMs, toMs) and prices them. The total cost is the exact
 * total rounded once; row costs are apportioned by largest remainder, so they add up to
 * the total whatever the grouping (no rounding drift between "by agent" and "by day").
 * Grouping by day splits intervals at UTC midnight.
 */
export function buildUsageReport(records: readonly UsageRecord[], opts: { fromMs: number; toMs: number; groupBy: GroupBy; label?: string | undefined; rates: Rates }): UsageReport {
  const groups = new Map<string, { name?: string | undefined; amounts: UsageAmounts }>();
  const add = (key: string, name: string | undefined, a: UsageAmounts): void => {
    let g = groups.get(key);
    if (!g) {
      g = { name, amounts: zeroAmounts() };
      groups.set(key, g);
    }
    addInto(g.amounts, a);
  };
  for (const r of records) {
    if (opts.groupBy === 'day') {
      const first = Math.max(r.startMs, opts.fromMs);
      const last = Math.min(r.endMs, opts.toMs);
      for (let day = Math.floor(first / DAY_MS) * DAY_MS; day < last; day += DAY_MS) {
        const a = amountsOf(r, Math.max(first, day), Math.min(last, day + DAY_MS));
        if (a) add(new Date(day).toISOString().slice(0, 10), undefined, a);
      }
      continue;
    }
    const a = amountsOf(r, opts.fromMs, opts.toMs);
    if (!a) continue;
    if (opts.groupBy === 'agent') add(r.agentId, r.agentName, a);
    else add(r.labels[opts.label ?? ''] ?? '', undefined, a);
  }
  const keys = [...groups.keys()].sort();
  const total = zeroAmounts();
  for (const k of keys) addInto(total, groups.get(k)!.amounts);
  const totalCost = costMicros(total, opts.rates);
  const numerators = keys.map((k) => costNumerator(groups.get(k)!.amounts, opts.rates));
  const shares = apportion(numerators, COST_DENOMINATOR, totalCost);
  return {
    fromMs: opts.fromMs,
    toMs: opts.toMs,
    groupBy: opts.groupBy,
    rows: keys.map((k, i) => ({ key: k, ...(groups.get(k)!.name !== undefined ? { name: groups.get(k)!.name } : {}), amounts: groups.get(k)!.amounts, costMicros: shares[i]! })),
    total: { amounts: total, costMicros: totalCost },
    currency: opts.rates.currency,
  };
}

/**
 * Splits `target` units over parts whose exact values are numerators[i] / denominator:
 * each gets its floor, the units left go to the largest remainders (ties: earlier first).
 * Requires target to be the rounded sum, so 0 <= target - sum(floors) <= parts.
 */
export function apportion(numerators: readonly bigint[], denominator: bigint, target: bigint): bigint[] {
  const floors = numerators.map((n) => n / denominator);
  let left = target - floors.reduce((s, f) => s + f, 0n);
  const order = numerators.map((n, i) => ({ i, rem: n % denominator })).sort((a, b) => (a.rem === b.rem ? a.i - b.i : a.rem > b.rem ? -1 : 1));
  for (const { i } of order) {
    if (left <= 0n) break;
    floors[i]! += 1n;
    left -= 1n;
  }
  return floors;
}

/** A bigint of base units as a decimal number with `scale` decimals (display only). */
export function toDecimal(value: bigint, divisor: bigint, scale = 6): number {
  const factor = 10n ** BigInt(scale);
  const scaled = (value * factor * 2n + divisor) / (2n * divisor);
  return Number(scaled) / Number(factor);
}

/** Micro-units as a fixed 6-decimal string ("12.000350"), exact. */
export function microsToString(micros: bigint): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  return `${neg ? '-' : ''}${abs / 1_000_000n}.${(abs % 1_000_000n).toString().padStart(6, '0')}`;
}

/** Display quantities of amounts: core-seconds, GiB-seconds, GPU-seconds, used CPU seconds. */
export function quantitiesOf(a: UsageAmounts): { runSeconds: number; cpuCoreSeconds: number; memoryGiBSeconds: number; gpuSeconds: number; usedCpuSeconds: number | null } {
  return {
    runSeconds: toDecimal(a.runMs, 1000n, 3),
    cpuCoreSeconds: toDecimal(a.cpuMillicoreMs, 1_000_000n),
    memoryGiBSeconds: toDecimal(a.memoryMiBMs, 1_024_000n),
    gpuSeconds: toDecimal(a.gpuMs, 1000n, 3),
    usedCpuSeconds: a.usedCpuKnown ? toDecimal(a.usedCpuMicros, 1_000_000n) : null,
  };
}

/** The report as CSV (RFC 4180): one line per row, then a "total" line. */
export function usageReportCsv(report: UsageReport): string {
  const esc = (v: string): string => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const line = (key: string, name: string, a: UsageAmounts, cost: bigint): string => {
    const q = quantitiesOf(a);
    return [key, name, q.runSeconds, q.cpuCoreSeconds, q.memoryGiBSeconds, q.gpuSeconds, q.usedCpuSeconds ?? '', microsToString(cost), report.currency].map((v) => esc(String(v))).join(',');
  };
  const out = [`${report.groupBy},name,runSeconds,cpuCoreSeconds,memoryGiBSeconds,gpuSeconds,usedCpuSeconds,cost,currency`];
  for (const r of report.rows) out.push(line(r.key, r.name ?? '', r.amounts, r.costMicros));
  out.push(line('total', '', report.total.amounts, report.total.costMicros));
  return out.join('\r\n') + '\r\n';
}
