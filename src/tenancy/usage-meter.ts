import type { Agent } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Store, UsageAccrual } from '../store/store.js';
import { DEFAULT_MAX_ACCRUAL_STEP_MS, accrualStep } from './usage-ledger.js';

/** A container's cumulative CPU counter, as the usage sampler last read it. */
export interface CpuCounter {
  containerId: string;
  cpuUsageSeconds: number;
  /**
   * When the reading was taken (ms epoch, the sample's timestampMs). A reading taken before
   * the agent's current run began belongs to an earlier run (the old container, or this one
   * before it restarted in place), whose counter is no measure of this run.
   */
  sampledAtMs: number;
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
  /**
   * Whether this replica meters. Only one should: the used CPU of a piece is measured from a
   * reading taken where the piece starts, and replicas closing pieces in turn have none of
   * each other's, so with every replica metering most pieces' used CPU would be unknown.
   * A new leader's first piece of each run has no baseline (unknown used CPU); allocation is
   * billed whole either way, from the persisted accrued_until.
   * @default always
   */
  isLeader?: (() => boolean) | undefined;
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
 * after the controller's phaseSince. Only used without a baseline of this run: a meter that
 * has one always takes the delta. A meter restarted within a run's first second has none,
 * and counts again what a tick of its predecessor in that second billed (at most that
 * second's CPU); a tighter slack would leave the first piece of slow transitions unknown.
 */
const RUN_START_SLACK_MS = 1_000;

/** The meter's last reading of an agent's counter, and the accrual boundary it was read for. */
interface Baseline extends CpuCounter {
  /** Where the piece closed with this reading ended (the next piece starts here when it was written). */
  atMs: number;
  unseenPasses: number;
}

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
  private readonly lastCpu = new Map<string, Baseline>();
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
    if (this.o.isLeader && !this.o.isLeader()) {
      // Readings taken while another replica meters would never match a piece start.
      this.lastCpu.clear();
      this.ended.clear();
      return 0;
    }
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
        const used = this.usedCpuMicros(agent, accruedUntil, step.nextAccruedUntil);
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
        // That run's baseline is used up (a new run's reading stays: of another container, or
        // of the same one restarted in place, taken after this run's last reading).
        const b = this.lastCpu.get(run.agentId);
        if (b?.containerId === run.containerId && b.sampledAtMs <= run.sampledAtMs) this.lastCpu.delete(run.agentId);
      } catch (err) {
        if (signal?.aborted) throw err;
        if (++entry.attempts >= SETTLE_ATTEMPTS) this.ended.delete(key);
        this.logger.warn({ err, agentId: run.agentId, attempts: entry.attempts }, 'used CPU of a finished run not recorded yet');
      }
    }
  }

  private async settle(run: FinalCpuCounter): Promise<void> {
    // The sampler resets its reading with the container; this guards a reused container id.
    if (!isOfRun(run, run.containerId, run.runningSinceMs)) return;
    const piece = await this.o.store.lastUsageOfAgent(run.tenantId, run.agentId, run.runningSinceMs - RUN_START_SLACK_MS, run.endedBeforeMs);
    if (piece?.id === undefined || piece.usedCpuMicros !== undefined) return;
    const baseline = this.baselineFor(run.agentId, run.containerId, run.runningSinceMs, piece.startMs);
    let fromSeconds: number;
    // The meter's own reading where the piece starts wins over the run-start rule: a pass
    // within the run's first second has already counted that much.
    if (baseline) fromSeconds = baseline.cpuUsageSeconds;
    else if (Math.abs(piece.startMs - run.runningSinceMs) <= RUN_START_SLACK_MS) fromSeconds = 0;
    else return;
    if (run.cpuUsageSeconds < fromSeconds) return; // the counter went down (cgroup recreated): unknown
    await this.o.store.fillUsedCpu(piece.id, Math.round((run.cpuUsageSeconds - fromSeconds) * 1e6));
  }

  /**
   * CPU used over the piece [fromMs, toMs] of the agent's current run (which began at its
   * status.phaseSince), and the reading taken as the baseline of the next piece.
   *
   * - A reading taken before the run began is of an earlier run (a quick restart: the
   *   sampler's last round still shows the old container, or the same container before it
   *   restarted in place): ignored, the piece stays unknown rather than billing the old
   *   run's total again.
   * - With this meter's reading of the same container, taken in this run, for the boundary
   *   the piece starts at: the delta. This wins over the run-start rule below, so passes
   *   in a run's first second (accrual intervals go down to 100 ms) do not each bill the
   *   whole counter.
   * - Otherwise, a piece that begins where the run began counts from 0: the container
   *   started then, and its cgroup counter counts from its start (the first piece of a run
   *   records its used CPU too, not only from the second tick on).
   * - Otherwise (a restarted control plane, another replica closed the previous piece, a
   *   counter that went down): unknown for that piece, never a guess.
   */
  private usedCpuMicros(agent: Agent, fromMs: number, toMs: number): number | undefined {
    const now = this.o.cpuCounter?.(agent.id);
    const runStartMs = agent.status.phaseSince;
    if (!now || !isOfRun(now, now.containerId, runStartMs)) return undefined;
    const prev = this.baselineFor(agent.id, now.containerId, runStartMs, fromMs);
    this.lastCpu.set(agent.id, { containerId: now.containerId, cpuUsageSeconds: now.cpuUsageSeconds, sampledAtMs: now.sampledAtMs, atMs: toMs, unseenPasses: 0 });
    if (prev) return now.cpuUsageSeconds < prev.cpuUsageSeconds ? undefined : Math.round((now.cpuUsageSeconds - prev.cpuUsageSeconds) * 1e6);
    if (Math.abs(fromMs - runStartMs) <= RUN_START_SLACK_MS) return Math.round(now.cpuUsageSeconds * 1e6);
    return undefined;
  }

  /**
   * This meter's reading that a piece starting at `pieceStartMs` may be measured from: of
   * the same container, taken in the run that began at `runStartMs`, and read for exactly
   * that boundary. A reading for another boundary (this meter's write lost the
   * compare-and-set to another replica, or failed) would count CPU that another piece
   * already holds, or leave out some: no baseline.
   */
  private baselineFor(agentId: string, containerId: string, runStartMs: number, pieceStartMs: number): Baseline | undefined {
    const b = this.lastCpu.get(agentId);
    return b !== undefined && b.atMs === pieceStartMs && isOfRun(b, containerId, runStartMs) ? b : undefined;
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
  views: () => readonly { agentId: string; usage?: { containerId: string; cpuUsageSeconds: number; timestampMs: number } | undefined }[],
): (agentId: string) => CpuCounter | undefined {
  let indexed: readonly unknown[] | undefined;
  let index = new Map<string, CpuCounter>();
  return (agentId) => {
    const current = views();
    if (current !== indexed) {
      indexed = current;
      index = new Map(current.flatMap((v) => (v.usage ? [[v.agentId, { containerId: v.usage.containerId, cpuUsageSeconds: v.usage.cpuUsageSeconds, sampledAtMs: v.usage.timestampMs }] as const] : [])));
    }
    return index.get(agentId);
  };
}

/**
 * Whether a reading is of `containerId` in the run that began at `runStartMs`. The sample
 * time comes from the collector's clock (the control plane's for cgroup and metrics-API
 * samples, the daemon's for Docker's stats API): a reading within clock skew of the start
 * may be taken for an earlier run's and the piece left unknown, never billed twice. A
 * sample without a time (NaN) cannot be placed: not of the run.
 */
function isOfRun(reading: CpuCounter, containerId: string, runStartMs: number): boolean {
  return reading.containerId === containerId && reading.sampledAtMs >= runStartMs;
}
