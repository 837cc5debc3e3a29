import { describe, it, expect } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { agentJson } from '../../test/cli/agent-json-fixture.js';
import { formatTable, parseOutputFormat, renderAgents } from './output.js';

const NOW = Date.parse('2026-01-01T02:00:00.000Z');

describe('formatTable', () => {
  it('pads every column but the last to its widest cell plus three spaces', () => {
    const text = formatTable(['NAME', 'PHASE', 'AGE'], [['a', 'Running', '5s'], ['longer-name', 'Failed', '3m']]);
    expect(text).toBe(['NAME          PHASE     AGE', 'a             Running   5s', 'longer-name   Failed    3m', ''].join('\n'));
  });

  it('leaves no trailing spaces when the last cell is empty', () => {
    const text = formatTable(['A', 'B'], [['x', '']]);
    expect(text.split('\n').every((l) => l === l.trimEnd())).toBe(true);
  });
});

describe('renderAgents', () => {
  const running = agentJson({ name: 'web', id: 'aaaaaaaa1111', createdAt: '2026-01-01T01:57:00.000Z', status: { phase: 'Running', node: 'node-1', restarts: 2 } });
  const failed = agentJson({
    name: 'batch-job',
    id: 'bbbbbbbb2222',
    createdAt: '2025-12-28T02:00:00.000Z',
    status: { phase: 'Failed', reason: 'OOMKilled', exitCode: 137, restarts: 0 },
    spec: { image: 'repo/batch:2' },
  });

  it('prints the kubectl-like default table', () => {
    expect(renderAgents([running, failed], 'table', { nowMs: NOW })).toBe(
      [
        'NAME        ID             PHASE     REASON      NODE     RESTARTS   AGE',
        'web         aaaaaaaa1111   Running   <none>      node-1   2          3m',
        'batch-job   bbbbbbbb2222   Failed    OOMKilled   <none>   0          4d',
        '',
      ].join('\n'),
    );
  });

  it('adds IMAGE, CPU, MEMORY and EXIT in wide output', () => {
    const lines = renderAgents([running, failed], 'wide', { nowMs: NOW }).trimEnd().split('\n');
    expect(lines[0]!.split(/\s{2,}/)).toEqual(['NAME', 'ID', 'PHASE', 'REASON', 'NODE', 'RESTARTS', 'AGE', 'IMAGE', 'CPU', 'MEMORY', 'EXIT']);
    expect(lines[1]!.split(/\s{2,}/).slice(7)).toEqual(['agent-samples/echo:1', '100m', '128Mi', '<none>']);
    expect(lines[2]!.split(/\s{2,}/).slice(7)).toEqual(['repo/batch:2', '100m', '128Mi', '137']);
  });

  it('prints a list object for several agents and the object itself for a single named one', () => {
    expect(JSON.parse(renderAgents([running, failed], 'json', { nowMs: NOW }))).toEqual({ items: [running, failed] });
    expect(JSON.parse(renderAgents([running], 'json', { nowMs: NOW, single: true }))).toEqual(running);
    expect(parseYaml(renderAgents([failed], 'yaml', { nowMs: NOW, single: true }))).toEqual(failed);
    expect(parseYaml(renderAgents([failed], 'yaml', { nowMs: NOW }))).toEqual({ items: [failed] });
  });

  it('prints agent/NAME lines for -o name', () => {
    expect(renderAgents([running, failed], 'name', { nowMs: NOW })).toBe('agent/web\nagent/batch-job\n');
  });

  it('prints nothing for an empty table (the caller says "No agents found")', () => {
    expect(renderAgents([], 'table', { nowMs: NOW })).toBe('');
    expect(JSON.parse(renderAgents([], 'json', { nowMs: NOW }))).toEqual({ items: [] });
  });
});

describe('parseOutputFormat', () => {
  it('defaults to table and rejects unknown formats', () => {
    expect(parseOutputFormat(undefined)).toBe('table');
    expect(parseOutputFormat('wide')).toBe('wide');
    expect(() => parseOutputFormat('xml')).toThrow(/unknown output format/);
  });
});
