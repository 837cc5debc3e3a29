import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../domain/errors.js';
import { compileNodePool, loadNodePool, nodeIdsOf } from './node-config.js';

const dir = mkdtempSync(join(tmpdir(), 'node-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadNodePool', () => {
  it('defaults to one local docker node named by AGENT_PLATFORM_NODE_NAME, using DOCKER_HOST', () => {
    expect(loadNodePool({ nodeName: 'box-1', dockerHost: 'unix:///run/d.sock' })).toEqual([
      { driver: 'docker', id: 'box-1', dockerHost: 'unix:///run/d.sock', labels: {}, taints: [], reserved: { cpuMillicores: 0, memoryMiB: 0 }, capacityOverride: {}, maxAgents: 110 },
    ]);
  });

  it('reads YAML from AGENT_PLATFORM_NODES_FILE and compiles quantities to base units', () => {
    const file = join(dir, 'nodes.yaml');
    writeFileSync(
      file,
      [
        '- id: gpu-1',
        '  driver: docker',
        '  dockerHost: tcp://10.0.0.5:2375',
        '  labels: { zone: b }',
        '  taints: [{ key: gpu, value: "true", effect: NoSchedule }]',
        '  reserved: { cpu: 500m, memory: 512Mi }',
        '  capacity: { cpu: "4", memory: 8Gi }',
        '  maxAgents: 20',
        '  gpus: [{ id: "0", model: A100, memoryMiB: 40960 }]',
        '- driver: simulated',
        '  count: 2',
        '  idPrefix: sim',
        '  shape: { cpu: "8", memory: 32Gi, gpus: { count: 4, model: T4 } }',
        '  failureRate: 0.1',
      ].join('\n'),
    );
    const [docker, sim] = loadNodePool({ AGENT_PLATFORM_NODES_FILE: file, nodeName: 'local' });
    expect(docker).toEqual({
      driver: 'docker',
      id: 'gpu-1',
      dockerHost: 'tcp://10.0.0.5:2375',
      labels: { zone: 'b' },
      taints: [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }],
      reserved: { cpuMillicores: 500, memoryMiB: 512 },
      capacityOverride: { cpuMillicores: 4000, memoryMiB: 8192 },
      maxAgents: 20,
      gpus: [{ id: '0', model: 'A100', memoryMiB: 40960 }],
    });
    expect(sim).toMatchObject({ driver: 'simulated', count: 2, idPrefix: 'sim', shape: { cpuMillicores: 8000, memoryMiB: 32768, gpus: { count: 4, model: 'T4' } }, failureRate: 0.1, maxAgents: 110 });
    expect(nodeIdsOf(sim!)).toEqual(['sim-00001', 'sim-00002']);
  });

  it('reads inline JSON from AGENT_PLATFORM_NODES', () => {
    const entries = loadNodePool({ AGENT_PLATFORM_NODES: JSON.stringify([{ id: 'a', driver: 'docker' }, { id: 'b', driver: 'docker', dockerHost: 'unix:///tmp/b.sock' }]), nodeName: 'local' });
    expect(entries.flatMap(nodeIdsOf)).toEqual(['a', 'b']);
  });

  it('refuses both variables at once, unreadable files and bad JSON, naming the variable', () => {
    expect(() => loadNodePool({ AGENT_PLATFORM_NODES: '[]', AGENT_PLATFORM_NODES_FILE: '/x', nodeName: 'l' })).toThrow(/not both/);
    expect(() => loadNodePool({ AGENT_PLATFORM_NODES_FILE: join(dir, 'missing.yaml'), nodeName: 'l' })).toThrow(/AGENT_PLATFORM_NODES_FILE: cannot read/);
    expect(() => loadNodePool({ AGENT_PLATFORM_NODES: '[{', nodeName: 'l' })).toThrow(/AGENT_PLATFORM_NODES is not valid JSON/);
  });
});

describe('compileNodePool', () => {
  const bad = (raw: unknown): string => {
    try {
      compileNodePool(raw);
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      return (err as Error).message;
    }
    throw new Error('expected an InputError');
  };

  it('names the entry and field of a problem', () => {
    expect(bad([{ id: 'a', driver: 'docker', dockerHost: 'http://x' }])).toContain('nodes.0.dockerHost');
    expect(bad([{ id: 'a', driver: 'docker' }, { id: 'B_', driver: 'docker' }])).toContain('nodes.1.id');
    expect(bad([{ id: 'a', driver: 'docker', typo: 1 }])).toContain('typo');
    expect(bad([{ driver: 'simulated', count: 0, shape: { cpu: '1', memory: '1Gi' } }])).toContain('nodes.0.count');
    expect(bad([{ id: 'a', driver: 'nomad' }])).toContain('nodes.0.driver');
    expect(bad([{ driver: 'kubernetes', contxt: 'x' }])).toContain('contxt');
    expect(bad([{ driver: 'kubernetes', egressProxy: { cidr: '10.0.0.1/32', port: 3128, pods: { namespace: 'Bad_NS', labels: { a: 'b' }, port: 3128 } } }])).toContain('nodes.0.egressProxy.pods.namespace');
    expect(bad([{ driver: 'kubernetes', egressProxy: { cidr: '10.0.0.1/32', port: 3128, pods: { namespace: 'ap', labels: {}, port: 3128 } } }])).toContain('nodes.0.egressProxy.pods.labels');
    expect(bad([])).toContain('at least one node');
  });

  it('names a bad quantity', () => {
    expect(bad([{ id: 'a', driver: 'docker', reserved: { cpu: '1x' } }])).toContain('nodes.0.reserved.cpu');
  });

  it('refuses duplicate ids, also between docker and simulated entries', () => {
    expect(bad([{ id: 'a', driver: 'docker' }, { id: 'a', driver: 'docker' }])).toMatch(/"a" appears twice/);
    expect(bad([{ id: 'sim-00001', driver: 'docker' }, { driver: 'simulated', count: 1, shape: { cpu: '1', memory: '1Gi' } }])).toMatch(/"sim-00001" appears twice/);
  });
});
