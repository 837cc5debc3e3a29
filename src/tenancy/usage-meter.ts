import type { Clock } from '../domain/clock.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Store, UsageAccrual } from '../store/store.js';
import { DEFAULT_MAX_ACCRUAL_STEP_MS, accrualStep } from './usage-ledger.js';

/** A container's cumulative CPU counter, as the usage sampler last read it. */
export interface CpuCounter {
  containerId: string;
  cpuUsageSeconds: number;
}

export interface UsageMeterOptions {
  store: Store;
  clock: Clock;
  /**
   * How often Running intervals are closed into the ledger. Also the most a bill can lag,
   * and (with accrued_until persisted) the most a crash can leave unbilled for a moment.
   * @default 10_000
   */
  intervalMs?: number | undefined;
  /** @default DEFAULT_MAX_ACCRUAL_STEP_MS (1 h); longer steps are taken for clock jumps. */
  maxStepMs?: number | undefined;
  /** Latest CPU counter of a running agent's container (UsageSampler); absent: used CPU unknown. */
  cpuCounter?: ((agentId: string) => CpuCounter | undefined) | undefined;
  logger?: Logger | undefined;
}

const BATCH = 200;
/**
 * How far an accrual position may be from the moment the agent entered Running and still
 * count as the run's start: the store sets accrued_until from the update's time, a few ms
 * after the controller's phaseSince. One second also covers a first tick inside that
 * second whose reading a restarted meter would count again (at most that second's CPU).
 */
const RUN_START_SLACK_MS = 1_000;

/**
 * Periodic accrual: for every Running agent, closes [accrued_until, now] into a ledger
 * record and moves accrued_until, atomically and compare-and-set, so replicas and
 * restarts never bill an interval twice and a restart leaves no gap (it resumes from the
 * persisted accrued_until). The last piece of a run is written by the store itself in the
 * transaction that changes the phase (see tenancy-queries.ts), without used CPU: the store
 * has no runtime counter, and by then the container (and its cgroup) is gone.
 */
export class UsageMeter {
  readonly intervalMs: number;
  private readonly maxStepMs: number;
  private readonly logger: Logger;
  /** Last CPU counter per agent, for the used-CPU delta of the next interval. */
  private readonly lastCpu = new Map<string, CpuCounter>();
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly o: UsageMeterOptions) {
    this.intervalMs = o.intervalMs ?? 10_000;
    this.maxStepMs = o.maxStepMs ?? DEFAULT_MAX_ACCRUAL_STEP_MS;
    this.logger = o.logger ?? silentLogger;
  }

  start(): void {
    if (this.abort) return;
    this.abort = new AbortController();
    this.loop = this.run(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    await this.loop;
    this.abort = undefined;
  }

  /** One accrual pass; returns the number of intervals billed. */
  async tick(signal?: AbortSignal): Promise<number> {
    const now = this.o.clock.now();
    let billed = 0;
    let after: string | undefined;
    const seen = new Set<string>();
    for (;;) {
      signal?.throwIfAborted();
      const page = await this.o.store.listAccruingAgents(after, BATCH);
      if (page.length === 0) break;
      const steps: UsageAccrual[] = [];
      for (const { agent, accruedUntil } of page) {
        seen.add(agent.id);
        const step = accrualStep(accruedUntil, now, this.maxStepMs);
        if (step.clamped) {
          this.logger.warn(
            { agentId: agent.id, accruedUntil, now, deltaMs: step.clamped.deltaMs, kind: step.clamped.kind },
            step.clamped.kind === 'backwards' ? 'clock went backwards; nothing accrued until it catches up' : `accrual gap longer than ${this.maxStepMs} ms (clock jump or long outage); billed ${this.maxStepMs} ms, skipped the rest`,
          );
        }
        if (step.nextAccruedUntil === accruedUntil) continue;
        const r = agent.spec.resources;
        const used = this.usedCpuMicros(agent.id, Math.abs(accruedUntil - agent.status.phaseSince) <= RUN_START_SLACK_MS);
        steps.push({
          agentId: agent.id,
          expectedAccruedUntil: accruedUntil,
          accruedUntil: step.nextAccruedUntil,
          record:
            step.toMs > step.fromMs
              ? {
                  tenantId: agent.tenantId,
                  agentId: agent.id,
                  agentName: agent.name,
                  labels: agent.labels,
                  startMs: step.fromMs,
                  endMs: step.toMs,
                  cpuMillicores: r.cpuMillicores,
                  memoryMiB: r.memoryMiB,
                  gpu: r.gpu,
                  ...(used !== undefined ? { usedCpuMicros: used } : {}),
                }
              : undefined,
        });
      }
      billed += await this.o.store.accrueUsage(steps);
      after = page[page.length - 1]!.agent.id;
      if (page.length < BATCH) break;
    }
    for (const id of this.lastCpu.keys()) if (!seen.has(id)) this.lastCpu.delete(id);
    return billed;
  }

  /**
   * CPU used since the previous boundary. `atRunStart`: the piece begins where the run began
   * (the container started then, and its cgroup counter counts from its start), so without a
   * previous reading the baseline is 0: the first piece of a run records its used CPU too,
   * not only from the second tick on. A piece that starts mid-run without a previous reading
   * of this process (a restarted control plane) has no known baseline: unknown for that piece.
   */
  private usedCpuMicros(agentId: string, atRunStart: boolean): number | undefined {
    const now = this.o.cpuCounter?.(agentId);
    if (!now) return undefined;
    const prev = this.lastCpu.get(agentId);
    this.lastCpu.set(agentId, now);
    // At a run's start a reading left from an earlier run (a container id can be reused
    // by a restart) is no baseline: the counter restarted with the container.
    if (atRunStart) return Math.round(now.cpuUsageSeconds * 1e6);
    // Another container, or a counter that went down (cgroup recreated) mid-run: no delta this time.
    if (!prev || prev.containerId !== now.containerId || now.cpuUsageSeconds < prev.cpuUsageSeconds) return undefined;
    return Math.round((now.cpuUsageSeconds - prev.cpuUsageSeconds) * 1e6);
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.tick(signal);
      } catch (err) {
        if (signal.aborted) return;
        this.logger.warn({ err }, 'usage accrual failed');
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, this.intervalMs);
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}

/**
 * A cpuCounter over the usage sampler's latest round (`views`, a new array per round):
 * indexed once per round, so a meter tick costs one map lookup per agent.
 */
export function cpuCountersFrom(
  views: () => readonly { agentId: string; usage?: { containerId: string; cpuUsageSeconds: number } | undefined }[],
): (agentId: string) => CpuCounter | undefined {
  let indexed: readonly unknown[] | undefined;
  let index = new Map<string, CpuCounter>();
  return (agentId) => {
    const current = views();
    if (current !== indexed) {
      indexed = current;
      index = new Map(current.flatMap((v) => (v.usage ? [[v.agentId, { containerId: v.usage.containerId, cpuUsageSeconds: v.usage.cpuUsageSeconds }] as const] : [])));
    }
    return index.get(agentId);
  };
}
