import { describe, expect, it } from 'vitest';
import type { EgressAuditRecord } from './egress-audit.js';
import { MemoryAuditSink } from './memory-audit-sink.js';

const entry = (n: number): EgressAuditRecord => ({
  time: n,
  agentId: 'a',
  tenantId: 't',
  sourceIp: '10.0.0.2',
  method: 'CONNECT',
  host: `h${n}.example`,
  port: 443,
  decision: 'allow',
  reason: 'allowed',
  bytesUp: 0,
  bytesDown: 0,
  durationMs: 0,
});

describe('MemoryAuditSink', () => {
  it('keeps the last `capacity` records in order', () => {
    const sink = new MemoryAuditSink(3);
    for (let n = 1; n <= 5; n += 1) sink.record(entry(n));
    expect(sink.entries().map((e) => e.time)).toEqual([3, 4, 5]);
    sink.clear();
    expect(sink.entries()).toEqual([]);
    expect(() => new MemoryAuditSink(0)).toThrow(RangeError);
  });

  it('waitFor resolves on a past or future match and rejects on abort', async () => {
    const sink = new MemoryAuditSink();
    sink.record(entry(1));
    await expect(sink.waitFor((e) => e.time === 1)).resolves.toMatchObject({ time: 1 });
    const later = sink.waitFor((e) => e.time === 2);
    sink.record(entry(2));
    await expect(later).resolves.toMatchObject({ time: 2 });
    await expect(sink.waitFor((e) => e.time === 99, AbortSignal.timeout(20))).rejects.toThrow();
  });
});
