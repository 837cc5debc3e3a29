import type { Agent } from '../domain/agent.js';
import { isTerminal } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Bus } from '../bus/bus.js';
import type { EventRecorder } from '../controllers/event-recorder.js';
import type { Store } from '../store/store.js';

/** Queue order: higher priority first, then older first, then id (a total order). */
export function queueOrder(a: Agent, b: Agent): number {
  return b.spec.priority - a.spec.priority || a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export interface AdmissionQueueOptions {
  store: Store;
  bus: Bus;
  clock: Clock;
  events: EventRecorder;
  /**
   * Fallback pass interval; releases (terminal phases, deletes) trigger a pass at once.
   * @default 5000
   */
  intervalMs?: number | undefined;
  logger?: Logger | undefined;
}

/**
 * Admits agents queued for quota (tenants with admission "queue") as room frees, in
 * queueOrder per tenant and strictly: a tenant's head of queue that does not fit blocks
 * the ones behind it, so a big high-priority agent is not starved by small ones. Each
 * admission is one atomic store call, so several replicas may run passes at once.
 */
export class AdmissionQueue {
  private readonly intervalMs: number;
  private readonly logger: Logger;
  private abort: AbortController | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly o: AdmissionQueueOptions) {
    this.intervalMs = o.intervalMs ?? 5_000;
    this.logger = o.logger ?? silentLogger;
  }

  start(): void {
    if (this.abort) return;
    this.abort = new AbortController();
    this.unsubscribe = this.o.bus.subscribe((e) => {
      if (e.objectKind !== 'Agent') return;
      const to = (e.data as { to?: string } | undefined)?.to;
      if (e.reason === 'Deleted' || (e.reason === 'PhaseChanged' && to !== undefined && isTerminal(to as Agent['status']['phase']))) this.trigger();
    });
    this.timer = setInterval(() => this.trigger(), this.intervalMs);
    this.timer.unref();
    this.trigger();
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    this.unsubscribe?.();
    clearInterval(this.timer);
    await this.running;
    this.abort = undefined;
  }

  /** Runs a pass soon; passes never overlap (one more follows if asked meanwhile). */
  trigger(): void {
    if (!this.abort || this.abort.signal.aborted) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.pass(this.abort?.signal);
        } catch (err) {
          this.logger.warn({ err }, 'admission pass failed');
        }
      } while (this.again && !this.abort?.signal.aborted);
    })().finally(() => {
      this.running = undefined;
    });
  }

  /** One pass over every queue; returns the agents admitted. */
  async pass(signal?: AbortSignal): Promise<Agent[]> {
    const queued = await this.o.store.listQueuedAgents();
    const byTenant = new Map<string, Agent[]>();
    for (const a of queued) byTenant.set(a.tenantId, [...(byTenant.get(a.tenantId) ?? []), a]);
    const admitted: Agent[] = [];
    for (const list of byTenant.values()) {
      for (const candidate of list.sort(queueOrder)) {
        if (signal?.aborted) return admitted;
        const agent = await this.o.store.admitQueuedAgent(candidate.id, this.o.clock.now());
        if (!agent) break;
        admitted.push(agent);
        this.o.bus.enqueue(agent.id);
        await this.o.events.record({ tenantId: agent.tenantId, objectKind: 'Agent', objectId: agent.id, type: 'Normal', reason: 'Admitted', message: 'quota available; admitted from the queue' });
      }
    }
    return admitted;
  }
}
