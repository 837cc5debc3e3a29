import { describe, expect, it } from 'vitest';
import type { ContainerSpec, LogLine, ObservedContainer, Runtime, RuntimeEvent } from '../runtime/runtime.js';
import { instrumentRuntime, type RuntimeMetrics } from './instrumented-runtime.js';

/** A runtime whose calls wait `delayMs` then succeed, or fail when `fail` names the operation. */
function scriptedRuntime(delayMs: number, fail: Set<string>): Runtime {
  const act = async <T>(op: string, value: T, signal?: AbortSignal): Promise<T> => {
    await new Promise((r) => setTimeout(r, delayMs));
    signal?.throwIfAborted();
    if (fail.has(op)) throw new Error(`${op} failed`);
    return value;
  };
  const observed: ObservedContainer = { containerId: 'c1', agentId: 'a1', state: 'running', oomKilled: false };
  return {
    driver: 'scripted',
    nodeId: 'n1',
    ping: (s) => act('ping', undefined, s),
    info: (s) => act('info', { cpuMillicores: 1000, memoryMiB: 512, os: 'linux', arch: 'amd64', runtimeVersion: '1', isolationClasses: ['runc'] }, s),
    create: (_spec: ContainerSpec, s) => act('create', 'c1', s),
    start: (_id, s) => act('start', undefined, s),
    stop: (_id, _g, s) => act('stop', undefined, s),
    remove: (_id, s) => act('remove', undefined, s),
    inspect: (_id, s) => act('inspect', observed, s),
    list: (s) => act('list', [observed], s),
    watch: (onEvent: (e: RuntimeEvent) => void) => onEvent({ action: 'start', containerId: 'c1', agentId: 'a1', time: 1 }),
    logs: async function* (): AsyncIterable<LogLine> {
      yield { stream: 'stdout', time: 1, text: 'hello' };
    },
    close: async () => undefined,
  };
}

class Recorder implements RuntimeMetrics {
  readonly calls: { driver: string; operation: string; seconds: number; failed: boolean }[] = [];
  observeRuntimeOperation(driver: string, operation: string, seconds: number, failed: boolean): void {
    this.calls.push({ driver, operation, seconds, failed });
  }
}

describe('instrumentRuntime', () => {
  it('times every request/response call by driver and operation and passes results through', async () => {
    const rec = new Recorder();
    const rt = instrumentRuntime(scriptedRuntime(15, new Set()), rec);
    expect(rt.driver).toBe('scripted');
    expect(rt.nodeId).toBe('n1');
    await rt.ping();
    expect((await rt.info()).cpuMillicores).toBe(1000);
    expect(await rt.create({} as ContainerSpec)).toBe('c1');
    await rt.start('c1');
    await rt.stop('c1', 10);
    expect((await rt.inspect('c1'))?.state).toBe('running');
    expect(await rt.list()).toHaveLength(1);
    await rt.remove('c1');
    expect(rec.calls.map((c) => c.operation)).toEqual(['ping', 'info', 'create', 'start', 'stop', 'inspect', 'list', 'remove']);
    for (const c of rec.calls) {
      expect(c.driver).toBe('scripted');
      expect(c.failed).toBe(false);
      // setTimeout may fire a little early; 10 ms proves the wait was measured.
      expect(c.seconds).toBeGreaterThanOrEqual(0.01);
      expect(c.seconds).toBeLessThan(5);
    }
  });

  it('counts failures and rethrows them unchanged', async () => {
    const rec = new Recorder();
    const rt = instrumentRuntime(scriptedRuntime(1, new Set(['create'])), rec);
    await expect(rt.create({} as ContainerSpec)).rejects.toThrow('create failed');
    expect(rec.calls).toEqual([expect.objectContaining({ operation: 'create', failed: true })]);
  });

  it('does not count a call its caller aborted as a runtime error', async () => {
    const rec = new Recorder();
    const rt = instrumentRuntime(scriptedRuntime(50, new Set()), rec);
    const abort = new AbortController();
    const call = rt.inspect('c1', abort.signal);
    abort.abort();
    await expect(call).rejects.toThrow();
    expect(rec.calls).toEqual([expect.objectContaining({ operation: 'inspect', failed: false })]);
  });

  it('passes watch and logs through untimed', async () => {
    const rec = new Recorder();
    const rt = instrumentRuntime(scriptedRuntime(1, new Set()), rec);
    const events: RuntimeEvent[] = [];
    rt.watch((e) => events.push(e), new AbortController().signal);
    const lines: string[] = [];
    for await (const l of rt.logs('c1', {})) lines.push(l.text);
    expect(events).toHaveLength(1);
    expect(lines).toEqual(['hello']);
    expect(rec.calls).toEqual([]);
  });
});
