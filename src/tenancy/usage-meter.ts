import type { Clock } from '../domain/clock.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Store, UsageAccrual } from '../store/store.js';
import { DEFAULT_MAX_ACCRUAL_STEP_MS, accrualStep } from './usage-ledger.js';

/** A container's cumulative CPU counter, as the usage sampler last read it. */
export interface CpuCounter {
  containerId: string;
  cpuUsageSeconds: number;
}

/** The last counter reading of a run that has ended (UsageSampler's EndedRun). */
export interface FinalCpuCounter extends CpuCounter {
  agentId: string;
  tenantId: string;
  /** When the agent entered Running for this run. */
  runningSinceMs: number;
  /** The run ended before this (bounds the search for its closing ledger piece). */
  endedBeforeMs: number;
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
 * Passes a baseline reading is kept after its agent stopped accruing: the sampler may
 * report the run's end a round after the meter's pass that no longer saw it Running.
 */
const BASELINE_KEEP_PASSES = 3;
/** Passes a store failure may defer the used CPU of a run's closing piece. */
const SETTLE_ATTEMPTS = 3;
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
 * has no runtime counter, and by then the container (and its cgroup) is gone. The next pass
 * fills it (compare-and-set) from the sampler's last reading of the run (runEnded), which
 * misses at most the CPU of the run's last sampler interval.
 */
export class UsageMeter {
  readonly intervalMs: number;
  private readonly maxStepMs: number;
  private readonly logger: Logger;
  /**
   * Last CPU counter per agent and the accrual boundary it was read at (where the next
   * piece starts), for the used-CPU delta of the next piece, the closing one included.
   */
  private readonly lastCpu = new Map<string, CpuCounter & { atMs: number; unseenPasses: number }>();
  /** Ended runs whose closing piece waits for its used CPU, by agent and container. */
  private readonly ended = new Map<string, { run: FinalCpuCounter; attempts: number }>();
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

  /**
   * Takes the last reading of a run that ended (UsageSampler.onRunEnded); the next pass
   * fills the used CPU of the run's closing piece with it.
   */
  runEnded(run: FinalCpuCounter): void {
    this.ended.set(`${run.agentId}/${run.containerId}`, { run, attempts: 0 });
  }

  /** One accrual pass; returns the number of intervals billed. */
  async tick(signal?: AbortSignal): Promise<number> {
    const now = this.o.clock.now();
    // Before this pass moves or drops the baselines the closing pieces are measured from.
    await this.settleEndedRuns(signal);
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
        const used = this.usedCpuMicros(agent.id, Math.abs(accruedUntil - agent.status.phaseSince) <= RUN_START_SLACK_MS, step.nextAccruedUntil);
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
    for (const [id, last] of this.lastCpu) {
      if (seen.has(id)) last.unseenPasses = 0;
      else if (++last.unseenPasses > BASELINE_KEEP_PASSES) this.lastCpu.delete(id);
    }
    return billed;
  }

  /**
   * Fills the used CPU of each ended run's closing piece: the run's last counter reading
   * minus the baseline the piece starts from, which is this meter's reading at the piece's
   * start, or zero when the piece starts where the run started (the counter counts from
   * the container's start: a job shorter than one accrual interval). Without either (a
   * control plane restarted mid-run before it had read the counter) the piece stays
   * unknown. A store failure leaves the run for the next pass.
   */
  private async settleEndedRuns(signal?: AbortSignal): Promise<void> {
    for (const [key, entry] of [...this.ended]) {
      signal?.throwIfAborted();
      const { run } = entry;
      try {
        await this.settle(run);
        this.ended.delete(key);
        // That run's baseline is used up (a new run's reading, of another container, stays).
        if (this.lastCpu.get(run.agentId)?.containerId === run.containerId) this.lastCpu.delete(run.agentId);
      } catch (err) {
        if (signal?.aborted) throw err;
        if (++entry.attempts >= SETTLE_ATTEMPTS) this.ended.delete(key);
        this.logger.warn({ err, agentId: run.agentId, attempts: entry.attempts }, 'used CPU of a finished run not recorded yet');
      }
    }
  }

  private async settle(run: FinalCpuCounter): Promise<void> {
    const baseline = this.lastCpu.get(run.agentId);
    const piece = await this.o.store.lastUsageOfAgent(run.tenantId, run.agentId, run.runningSinceMs - RUN_START_SLACK_MS, run.endedBeforeMs);
    if (piece?.id === undefined || piece.usedCpuMicros !== undefined) return;
    let fromSeconds: number;
    // The meter's own reading where the piece starts wins over the run-start rule: a pass
    // within the run's first second has already counted that much.
    if (baseline?.containerId === run.containerId && baseline.atMs === piece.startMs) fromSeconds = baseline.cpuUsageSeconds;
    else if (Math.abs(piece.startMs - run.runningSinceMs) <= RUN_START_SLACK_MS) fromSeconds = 0;
    else return;
    if (run.cpuUsageSeconds < fromSeconds) return; // the counter went down (cgroup recreated): unknown
    await this.o.store.fillUsedCpu(piece.id, Math.round((run.cpuUsageSeconds - fromSeconds) * 1e6));
  }

  /**
   * CPU used since the previous boundary. `atRunStart`: the piece begins where the run began
   * (the container started then, and its cgroup counter counts from its start), so without a
   * previous reading the baseline is 0: the first piece of a run records its used CPU too,
   * not only from the second tick on. A piece that starts mid-run without a previous reading
   * of this process (a restarted control plane) has no known baseline: unknown for that piece.
   */
  private usedCpuMicros(agentId: string, atRunStart: boolean, atMs: number): number | undefined {
    const now = this.o.cpuCounter?.(agentId);
    if (!now) return undefined;
    const prev = this.lastCpu.get(agentId);
    this.lastCpu.set(agentId, { containerId: now.containerId, cpuUsageSeconds: now.cpuUsageSeconds, atMs, unseenPasses: 0 });
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
