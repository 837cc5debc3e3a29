import type { LogLine, ObservedContainer } from '../runtime.js';
import { simExitedText, type SimProgram } from './sim-program.js';
import type { TimerEntry } from './timer-heap.js';

/** A run that has ended, kept so the logs of a restarted container still show it. */
interface PastRun {
  startedAt: number;
  finishedAt: number;
  exitCode: number;
  /** Sequence number of the run's first log line. */
  firstSeq: number;
}

/** A log line with its position in the container's whole output, for follow cursors. */
export interface SequencedLine {
  seq: number;
  line: LogLine;
}

/** Ended runs kept for the logs; a crash-looping container does not grow without bound. */
const MAX_PAST_RUNS = 8;

/**
 * The in-memory record of one simulated container. Deliberately small (no spec, no log
 * buffer): output is recomputed from the shared program and the run times, so 100,000
 * records cost a few tens of MB. State changes go through SimulatedCluster, which owns
 * the timers and events.
 */
export class SimContainer {
  state: 'created' | 'running' | 'exited' = 'created';
  exitCode: number | undefined;
  oomKilled = false;
  startedAt: number | undefined;
  finishedAt: number | undefined;
  /** Starts so far; also the index of the next run for the seeded failure draw. */
  runCount = 0;
  /** Sequence number of the current run's first line. */
  seqBase = 0;
  /** Planned natural end of the current run (ms epoch; Infinity: never). */
  endAt = Infinity;
  exitTimer: TimerEntry | undefined;
  removed = false;
  private history: PastRun[] | undefined;
  /** Callbacks waiting for any state change (follow readers, stop grace). */
  private waiters: Set<() => void> | undefined;

  /** No name field: the name is containerName(agentId), looked up through SimNode.byAgent. */
  constructor(
    readonly id: string,
    readonly agentId: string,
    readonly program: SimProgram,
  ) {}

  observe(): ObservedContainer {
    const ended = this.state === 'exited';
    return {
      containerId: this.id,
      agentId: this.agentId,
      state: this.state,
      exitCode: ended ? this.exitCode : undefined,
      oomKilled: this.oomKilled,
      startedAt: this.startedAt,
      finishedAt: ended ? this.finishedAt : undefined,
    };
  }

  /** Moves the ended current run into the history before a new run starts. */
  archiveRun(): void {
    if (this.runCount === 0 || this.startedAt === undefined || this.finishedAt === undefined) return;
    const run: PastRun = { startedAt: this.startedAt, finishedAt: this.finishedAt, exitCode: this.exitCode ?? 0, firstSeq: this.seqBase };
    this.seqBase += this.appendRun([], run.startedAt, run.finishedAt, run.exitCode, run.firstSeq);
    (this.history ??= []).push(run);
    if (this.history.length > MAX_PAST_RUNS) this.history.shift();
  }

  /** Output so far (at nowMs), oldest first, at most the last `ringLines` lines. */
  lines(nowMs: number, ringLines: number): SequencedLine[] {
    const out: SequencedLine[] = [];
    for (const run of this.history ?? []) this.appendRun(out, run.startedAt, run.finishedAt, run.exitCode, run.firstSeq);
    if (this.runCount > 0 && this.startedAt !== undefined) {
      const end = this.state === 'running' ? undefined : this.finishedAt;
      this.appendRun(out, this.startedAt, end, this.exitCode ?? 0, this.seqBase, nowMs);
    }
    return out.length > ringLines ? out.slice(out.length - ringLines) : out;
  }

  /** When the current run next writes a line or ends, whichever is first (Infinity: never). */
  nextChangeAt(nowMs: number): number {
    if (this.state !== 'running' || this.startedAt === undefined) return Infinity;
    for (const line of this.program.lines) {
      const at = this.startedAt + line.atMs;
      if (at > nowMs) return Math.min(at, this.endAt);
    }
    return this.endAt;
  }

  addWaiter(waiter: () => void): void {
    (this.waiters ??= new Set()).add(waiter);
  }

  deleteWaiter(waiter: () => void): void {
    this.waiters?.delete(waiter);
    if (this.waiters?.size === 0) this.waiters = undefined;
  }

  notify(): void {
    if (this.waiters === undefined) return;
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Appends a run's visible lines; returns how many. An unfinished run shows lines up to nowMs. */
  private appendRun(out: SequencedLine[], startedAt: number, finishedAt: number | undefined, exitCode: number, firstSeq: number, nowMs = Infinity): number {
    const horizon = finishedAt ?? nowMs;
    let seq = firstSeq;
    for (const l of this.program.lines) {
      const time = startedAt + l.atMs;
      if (time > horizon) break;
      out.push({ seq: seq++, line: { stream: l.stream, time, text: l.text } });
    }
    if (this.program.opaque && finishedAt !== undefined) {
      out.push({ seq: seq++, line: { stream: 'stdout', time: finishedAt, text: simExitedText(exitCode) } });
    }
    return seq - firstSeq;
  }
}
