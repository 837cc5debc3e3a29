import type { Clock } from '../domain/clock.js';
import type { NewPlatformEvent, PlatformEvent } from '../domain/event.js';
import type { Bus } from '../bus/bus.js';
import type { Store } from '../store/store.js';

/** Persists an event and fans it out to live subscribers (SSE, watchers). */
export class EventRecorder {
  constructor(
    private readonly store: Store,
    private readonly bus: Bus,
    private readonly clock: Clock,
  ) {}

  /** Fans out events the store has already stored (written together with an agent change). */
  published(events: readonly PlatformEvent[]): void {
    for (const e of events) this.bus.publish(e);
  }

  /** Stamps `time` (now, unless given) on an event about to be stored. */
  stamp<E extends Omit<NewPlatformEvent, 'time'> & { time?: number }>(event: E): NewPlatformEvent {
    return { ...event, time: event.time ?? this.clock.now() };
  }

  async record(event: Omit<NewPlatformEvent, 'time'> & { time?: number }): Promise<PlatformEvent> {
    const stored = await this.store.appendEvent({ ...event, time: event.time ?? this.clock.now() });
    this.bus.publish(stored);
    return stored;
  }
}
