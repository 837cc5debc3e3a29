import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { applyLive, excessMessage, findExcess, isQueueable, quotaExceededError, quotaView, ZERO_USED } from './quota.js';

describe('quota admission math', () => {
  it('admits up to the limit and not one millicore more', () => {
    const limits = { cpuMillicores: 1000 };
    expect(findExcess(limits, { ...ZERO_USED, cpuMillicores: 900 }, { cpuMillicores: 100, memoryMiB: 1, gpu: 0, agents: 1 })).toBeUndefined();
    expect(findExcess(limits, { ...ZERO_USED, cpuMillicores: 901 }, { cpuMillicores: 100, memoryMiB: 1, gpu: 0, agents: 1 })).toEqual({ resource: 'cpu', used: 901, requested: 100, limit: 1000 });
  });

  it('checks per-agent maximums first; they are not queueable', () => {
    const e = findExcess({ maxAgentMemoryMiB: 512, memoryMiB: 100 }, ZERO_USED, { cpuMillicores: 1, memoryMiB: 1024, gpu: 0, agents: 1 })!;
    expect(e.resource).toBe('perAgent.memory');
    expect(isQueueable(e)).toBe(false);
    expect(excessMessage(e)).toBe('quota exceeded for perAgent.memory: requested 1Gi > per-agent limit 512Mi');
  });

  it('the running limit counts live agents; the agents limit counts records', () => {
    expect(findExcess({ running: 2 }, { ...ZERO_USED, running: 2 }, { cpuMillicores: 1, memoryMiB: 1, gpu: 0, agents: 0 })?.resource).toBe('running');
    expect(findExcess({ agents: 2 }, { ...ZERO_USED, agents: 2 }, { cpuMillicores: 1, memoryMiB: 1, gpu: 0, agents: 0 })).toBeUndefined();
    expect(findExcess({ agents: 2 }, { ...ZERO_USED, agents: 2 }, { cpuMillicores: 1, memoryMiB: 1, gpu: 0, agents: 1 })?.resource).toBe('agents');
  });

  it('zero GPU requests never exceed a GPU limit of zero', () => {
    expect(findExcess({ gpu: 0 }, ZERO_USED, { cpuMillicores: 1, memoryMiB: 1, gpu: 0, agents: 1 })).toBeUndefined();
    expect(findExcess({ gpu: 0 }, ZERO_USED, { cpuMillicores: 1, memoryMiB: 1, gpu: 1, agents: 1 })?.resource).toBe('gpu');
  });

  it('the error is 403-mapped QUOTA_EXCEEDED with the documented message and details', () => {
    const err = quotaExceededError('team-a', { resource: 'memory', used: 900, requested: 256, limit: 1024 });
    expect(err.code).toBe('QUOTA_EXCEEDED');
    expect(err.message).toBe('quota exceeded for memory: used 900Mi + requested 256Mi > limit 1Gi');
    expect(err.details).toEqual({ tenantId: 'team-a', resource: 'memory', used: 900, requested: 256, limit: 1024 });
  });

  it('view shows free never below zero; null for unlimited', () => {
    const v = quotaView({ cpuMillicores: 500 }, { ...ZERO_USED, cpuMillicores: 700, memoryMiB: 10 });
    expect(v.cpuMillicores).toEqual({ limit: 500, used: 700, free: 0 });
    expect(v.memoryMiB).toEqual({ limit: null, used: 10, free: null });
  });

  it('property: admitting greedily never exceeds any limit, and releasing restores the counters exactly', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ cpu: fc.integer({ min: 1, max: 2000 }), mem: fc.integer({ min: 1, max: 4096 }), gpu: fc.integer({ min: 0, max: 2 }) }), { maxLength: 60 }), fc.record({ cpu: fc.integer({ min: 0, max: 8000 }), mem: fc.integer({ min: 0, max: 16384 }), gpu: fc.integer({ min: 0, max: 4 }), running: fc.integer({ min: 0, max: 20 }) }), (reqs, l) => {
        const limits = { cpuMillicores: l.cpu, memoryMiB: l.mem, gpu: l.gpu, running: l.running };
        let used = ZERO_USED;
        const held: typeof reqs = [];
        for (const r of reqs) {
          const req = { cpuMillicores: r.cpu, memoryMiB: r.mem, gpu: r.gpu, agents: 1 };
          if (findExcess(limits, used, req)) continue;
          used = { ...applyLive(used, req, 1), agents: used.agents + 1 };
          held.push(r);
          expect(used.cpuMillicores).toBeLessThanOrEqual(l.cpu);
          expect(used.memoryMiB).toBeLessThanOrEqual(l.mem);
          expect(used.gpu).toBeLessThanOrEqual(l.gpu);
          expect(used.running).toBeLessThanOrEqual(l.running);
        }
        for (const r of held) used = applyLive(used, { cpuMillicores: r.cpu, memoryMiB: r.mem, gpu: r.gpu }, -1);
        expect({ ...used, agents: 0 }).toEqual(ZERO_USED);
      }),
    );
  });
});
