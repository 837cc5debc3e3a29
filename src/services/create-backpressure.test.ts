import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../domain/errors.js';
import { CreateBackpressure, type CreateBackpressureOptions } from './create-backpressure.js';

/** A backlog the test sets, counting how often it was read. */
function backlogOf(initial: number): { read: () => Promise<number>; set: (n: number) => void; add: (n: number) => void; reads: () => number } {
  let value = initial;
  let reads = 0;
  return {
    read: async () => {
      reads++;
      return value;
    },
    set: (n) => (value = n),
    add: (n) => (value += n),
    reads: () => reads,
  };
}

/**
 * A work queue whose backlog takes `readMs` to read. Each create let through queues its
 * agent's key, as the real one does, until the controllers catch up (then it stays empty).
 */
function slowQueue(initial: number, readMs: number) {
  const q = {
    value: initial,
    through: 0,
    caughtUp: false,
    read: async (): Promise<number> => {
      await sleep(readMs);
      return q.value;
    },
    create: (g: CreateBackpressure, n: number): Promise<void[]> =>
      Promise.all(
        Array.from({ length: n }, () =>
          g.wait().then(() => {
            q.through++;
            if (!q.caughtUp) q.value++;
          }),
        ),
      ),
    catchUp: (): void => {
      q.caughtUp = true;
      q.value = 0;
    },
  };
  return q;
}

/** Settles `p` into a record the test can look at without awaiting it. */
function track(p: Promise<void>): { state: 'waiting' | 'done' | 'failed'; error?: unknown } {
  const t: { state: 'waiting' | 'done' | 'failed'; error?: unknown } = { state: 'waiting' };
  p.then(
    () => (t.state = 'done'),
    (error: unknown) => Object.assign(t, { state: 'failed', error }),
  );
  return t;
}

const gate = (o: Partial<CreateBackpressureOptions> & Pick<CreateBackpressureOptions, 'backlog'>): CreateBackpressure =>
  new CreateBackpressure({ limit: 4, maxWaitMs: 60_000, pollMs: 2, ...o });

describe('CreateBackpressure', () => {
  it('with limit 0 never reads the backlog and never waits', async () => {
    const backlog = backlogOf(1_000_000);
    const g = gate({ backlog: backlog.read, limit: 0 });
    for (let i = 0; i < 10; i++) await g.wait();
    expect(backlog.reads()).toBe(0);
  });

  it('lets creates through while there is room, counting each one until the next reading', async () => {
    const backlog = backlogOf(1);
    // One reading is trusted for a long time here, so only the count of creates moves it.
    const g = gate({ backlog: backlog.read, limit: 4, pollMs: 60_000 });
    await g.wait();
    await g.wait();
    await g.wait(); // 1 queued + 3 let through = 4: no room left
    const fourth = track(g.wait());
    await sleep(20);
    expect(fourth.state).toBe('waiting');
    expect(g.waiting()).toBe(1);
    expect(backlog.reads()).toBe(1);
  });

  it('releases waiting creates in arrival order once the backlog is a quarter below the limit, as many as fill it', async () => {
    const backlog = backlogOf(10);
    const order: number[] = [];
    const g = gate({ backlog: backlog.read, limit: 10 });
    // Each create let through queues its agent's key, as the real one does.
    const waits = Array.from({ length: 5 }, (_, i) =>
      g.wait().then(() => {
        order.push(i);
        backlog.add(1);
      }),
    );
    await sleep(20);
    expect(order).toEqual([]);
    expect(g.waiting()).toBe(5);
    backlog.set(8); // below the limit, but not yet a quarter below it
    await sleep(30);
    expect(order).toEqual([]);
    backlog.set(7); // a quarter below: room for 3, let through together
    await sleep(30);
    expect(order).toEqual([0, 1, 2]);
    expect(g.waiting()).toBe(2);
    backlog.set(0);
    await Promise.all(waits);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(g.waiting()).toBe(0);
  });

  it('a create that arrives while others wait queues behind them, even if a reading shows room', async () => {
    const backlog = backlogOf(4);
    const order: string[] = [];
    const g = gate({ backlog: backlog.read, limit: 4, pollMs: 10 });
    const through = (name: string) => () => {
      order.push(name);
      backlog.add(1);
    };
    const first = g.wait().then(through('first'));
    await sleep(1);
    backlog.set(3); // a quarter below the limit: room for exactly one
    await sleep(15); // the reading the second create makes is fresh and shows that room
    const second = g.wait().then(through('second'));
    await sleep(60);
    expect(order).toEqual(['first']);
    backlog.set(0);
    await Promise.all([first, second]);
    expect(order).toEqual(['first', 'second']);
  });

  it('lets a create go ahead after maxWaitMs even if the controllers never catch up', async () => {
    const waited: number[] = [];
    const g = gate({ backlog: backlogOf(100).read, limit: 1, maxWaitMs: 150, onWaited: (ms) => waited.push(ms) });
    const t0 = Date.now();
    await g.wait();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(145);
    expect(waited).toHaveLength(1);
    expect(waited[0]).toBeGreaterThanOrEqual(145);
  });

  it('an aborted wait fails with REQUEST_ABORTED and takes no room from the others', async () => {
    const backlog = backlogOf(3);
    const g = gate({ backlog: backlog.read, limit: 3 });
    const ac = new AbortController();
    const abandoned = track(g.wait(ac.signal));
    const kept = track(g.wait());
    await sleep(10);
    ac.abort();
    await sleep(5);
    expect(abandoned.state).toBe('failed');
    expect(abandoned.error).toBeInstanceOf(UnavailableError);
    expect((abandoned.error as UnavailableError).code).toBe('REQUEST_ABORTED');
    expect(g.waiting()).toBe(1);
    backlog.set(2); // a quarter below the limit of 3: room for one, for the create still waiting
    await sleep(30);
    expect(kept.state).toBe('done');
    // Already aborted before it starts: fails at once, nothing queued.
    backlog.set(3);
    await expect(g.wait(AbortSignal.abort())).rejects.toMatchObject({ code: 'REQUEST_ABORTED' });
    expect(g.waiting()).toBe(0);
  });

  it('makes the signal of a lazily given one only when the create has to queue', async () => {
    const backlog = backlogOf(0);
    const g = gate({ backlog: backlog.read, limit: 1 });
    let made = 0;
    const ac = new AbortController();
    const lazy = (): AbortSignal => {
      made++;
      return ac.signal;
    };
    await g.wait(lazy); // room: straight through
    expect(made).toBe(0);
    backlog.set(1);
    await sleep(10); // let the reading go stale
    const queued = track(g.wait(lazy));
    await sleep(10);
    expect(made).toBe(1);
    ac.abort();
    await sleep(5);
    expect(queued.state).toBe('failed');
  });

  it('counts every create that shares one slow reading: no more go through than there is room for', async () => {
    const q = slowQueue(4, 10);
    const g = gate({ backlog: q.read, limit: 5 });
    const creates = q.create(g, 50);
    await sleep(40);
    expect(q.through).toBe(1);
    q.catchUp();
    await creates;
    expect(q.through).toBe(50);
  });

  it('never lets two release passes use one reading (a reading slower than pollMs)', async () => {
    const q = slowQueue(8, 20);
    const g = gate({ backlog: q.read, limit: 8, pollMs: 2 });
    const creates = q.create(g, 10);
    await sleep(60);
    expect(q.through).toBe(0);
    q.value = 6; // room for 2
    await sleep(150);
    expect(q.through).toBe(2);
    expect(q.value).toBe(8);
    q.catchUp();
    await creates;
  });

  it('lets creates go ahead when a reading does not answer within readTimeoutMs', async () => {
    const errors: unknown[] = [];
    const g = gate({ backlog: () => new Promise<number>(() => undefined), limit: 1, readTimeoutMs: 50, onError: (err) => errors.push(err) });
    const t0 = Date.now();
    await g.wait();
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(String(errors[0])).toMatch(/did not answer within 50 ms/);
  });

  it('close() fails waiting and later creates with SHUTTING_DOWN', async () => {
    const g = gate({ backlog: backlogOf(100).read, limit: 1 });
    const held = track(g.wait());
    await sleep(10);
    expect(held.state).toBe('waiting');
    g.close();
    await sleep(1);
    expect(held.state).toBe('failed');
    expect((held.error as UnavailableError).code).toBe('SHUTTING_DOWN');
    expect(g.waiting()).toBe(0);
    await expect(g.wait()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
  });

  it('goes ahead when the backlog cannot be read, and says so', async () => {
    const errors: unknown[] = [];
    let fail = false;
    const g = gate({
      backlog: async () => {
        if (fail) throw new Error('redis down');
        return 100;
      },
      limit: 1,
      onError: (err) => errors.push(err),
    });
    const waiting = track(g.wait());
    await sleep(20);
    expect(waiting.state).toBe('waiting');
    fail = true;
    await sleep(20);
    expect(waiting.state).toBe('done');
    expect(errors.length).toBeGreaterThan(0);
    await g.wait(); // the fast path fails open too
  });
});
