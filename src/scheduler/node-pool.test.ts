import { describe, expect, it } from 'vitest';
import { ConflictError, InputError, NotFoundError } from '../domain/errors.js';
import { NodePool } from './node-pool.js';
import { makeNode } from './testing/make-node.js';

const gpus = (...ids: string[]) => ids.map((id) => ({ id, model: 'test' }));

describe('NodePool', () => {
  it('computes free values from capacity - reserved - allocated and sorts nodes by id', () => {
    const pool = NodePool.fromSnapshot({
      nodes: [
        makeNode('b', { capacity: { cpuMillicores: 4000, memoryMiB: 8192 }, reserved: { cpuMillicores: 500, memoryMiB: 1024 }, allocated: { cpuMillicores: 1000, memoryMiB: 2048, agents: 2 } }),
        makeNode('a'),
      ],
    });
    expect(pool.ids).toEqual(['a', 'b']);
    const b = pool.indexOf('b');
    expect(pool.allocatableCpu[b]! - pool.usedCpu[b]!).toBe(2500);
    expect(pool.allocatableMemory[b]! - pool.usedMemory[b]!).toBe(5120);
    expect(pool.indexOf('zzz')).toBe(-1);
  });

  it('rejects duplicate node ids', () => {
    expect(() => NodePool.fromSnapshot({ nodes: [makeNode('a'), makeNode('a')] })).toThrow(InputError);
  });

  it('assumes and releases cpu, memory, slots and GPUs', () => {
    const pool = NodePool.fromSnapshot({ nodes: [makeNode('a', { capacity: { gpus: gpus('0', '1', '2') }, allocated: { gpuIds: ['1'] } })] });
    pool.assume('a', 'x', { cpuMillicores: 1000, memoryMiB: 512, gpu: 1 }, ['0']);
    expect(pool.allocationOf('a')).toEqual({ cpuMillicores: 1000, memoryMiB: 512, agents: 1, gpuIds: ['0', '1'] });
    expect(pool.freeGpuCount[0]).toBe(1);
    expect(pool.pickGpuIds(0, 1)).toEqual(['2']);
    expect(pool.assumedNodeOf('x')).toBe('a');
    expect(pool.release('x')).toBe(true);
    expect(pool.release('x')).toBe(false);
    expect(pool.allocationOf('a')).toEqual({ cpuMillicores: 0, memoryMiB: 0, agents: 0, gpuIds: ['1'] });
    expect(pool.freeGpuCount[0]).toBe(2);
  });

  it('refuses to over-commit and leaves the pool unchanged when it refuses', () => {
    const pool = NodePool.fromSnapshot({ nodes: [makeNode('a', { capacity: { cpuMillicores: 1000, memoryMiB: 1000, maxAgents: 2, gpus: gpus('0') } })] });
    pool.assume('a', 'x', { cpuMillicores: 600, memoryMiB: 100 });
    const before = pool.allocationOf('a');
    expect(() => pool.assume('a', 'y', { cpuMillicores: 500, memoryMiB: 100 })).toThrow(expect.objectContaining({ code: 'NODE_OVERCOMMITTED' }));
    expect(() => pool.assume('a', 'y', { cpuMillicores: 100, memoryMiB: 901 })).toThrow(ConflictError);
    expect(() => pool.assume('a', 'y', { cpuMillicores: 100, memoryMiB: 100, gpu: 1 }, ['7'])).toThrow(expect.objectContaining({ code: 'GPU_UNAVAILABLE' }));
    expect(() => pool.assume('a', 'y', { cpuMillicores: 100, memoryMiB: 100, gpu: 2 }, ['0', '0'])).toThrow(expect.objectContaining({ code: 'GPU_UNAVAILABLE' }));
    expect(() => pool.assume('a', 'y', { cpuMillicores: 100, memoryMiB: 100, gpu: 1 }, [])).toThrow(InputError);
    expect(() => pool.assume('a', 'x', { cpuMillicores: 1, memoryMiB: 1 })).toThrow(expect.objectContaining({ code: 'AGENT_ALREADY_ASSUMED' }));
    expect(() => pool.assume('nope', 'y', { cpuMillicores: 1, memoryMiB: 1 })).toThrow(NotFoundError);
    expect(pool.allocationOf('a')).toEqual(before);
    pool.assume('a', 'y', { cpuMillicores: 400, memoryMiB: 900, gpu: 1 }, ['0']);
    // The node is now exactly full: no more agent slots.
    expect(() => pool.assume('a', 'z', { cpuMillicores: 0, memoryMiB: 0 })).toThrow(expect.objectContaining({ code: 'NODE_OVERCOMMITTED' }));
  });

  it('keeps spread group counts per node and per topology domain in step', () => {
    const pool = NodePool.fromSnapshot({
      nodes: [makeNode('a', { labels: { zone: 'z1' } }), makeNode('b', { labels: { zone: 'z1' } }), makeNode('c', { labels: { zone: 'z2' } }), makeNode('d')],
      agentCountsByNode: { web: { a: 2, c: 1, unknown: 9 } },
    });
    const { names } = pool.topologyDomains('zone');
    expect(names).toEqual(['z1', 'z2']);
    const counts = pool.spreadDomainCounts('web', 'zone');
    expect([...counts]).toEqual([2, 1]);
    pool.assume('b', 'w1', { cpuMillicores: 1, memoryMiB: 1 }, [], 'web');
    pool.assume('d', 'w2', { cpuMillicores: 1, memoryMiB: 1 }, [], 'web'); // no zone label: node count only
    expect([...counts]).toEqual([3, 1]);
    expect(pool.spreadCountAt('web', pool.indexOf('d'))).toBe(1);
    pool.release('w1');
    expect([...counts]).toEqual([2, 1]);
    expect(pool.spreadCountAt('web', pool.indexOf('b'))).toBe(0);
  });
});
