import { describe, expect, it } from 'vitest';
import { JsonLineSplitter, dockerSinceParam, parseDockerEvent } from './docker-events.js';

const event = (action: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  Type: 'container',
  Action: action,
  status: action,
  id: 'abc',
  Actor: { ID: 'abc', Attributes: { 'io.agent-platform.agent-id': 'a1', image: 'busybox', exitCode: '3' } },
  scope: 'local',
  time: 1714566896,
  timeNano: 1714566896123456789,
  ...extra,
});

describe('parseDockerEvent', () => {
  it('normalises the actions the platform acts on', () => {
    for (const action of ['start', 'die', 'oom', 'destroy', 'create', 'stop'] as const) {
      expect(parseDockerEvent(event(action))).toEqual({ action, containerId: 'abc', agentId: 'a1', time: 1714566896123 });
    }
  });

  it('ignores other actions and other object types', () => {
    for (const action of ['exec_create: sh -c ls', 'exec_start: sh', 'attach', 'kill', 'resize', 'health_status: healthy', 'rename']) {
      expect(parseDockerEvent(event(action))).toBeUndefined();
    }
    expect(parseDockerEvent(event('create', { Type: 'network' }))).toBeUndefined();
  });

  it('falls back to status, id and time of older daemons', () => {
    expect(parseDockerEvent({ status: 'die', id: 'xyz', time: 1714566896 })).toEqual({
      action: 'die',
      containerId: 'xyz',
      agentId: '',
      time: 1714566896000,
    });
  });

  it('never throws on garbage', () => {
    for (const value of [null, undefined, 42, 'x', [], {}, { Action: 'start' }, { Action: 'start', Actor: null }]) {
      expect(() => parseDockerEvent(value)).not.toThrow();
      expect(parseDockerEvent(value)).toBeUndefined();
    }
  });
});

describe('JsonLineSplitter', () => {
  it('keeps partial lines across chunks and skips bad lines', () => {
    const splitter = new JsonLineSplitter();
    expect(splitter.push('{"a":1}\n{"b"')).toEqual([{ a: 1 }]);
    expect(splitter.push(':2}\nnot json\n\n')).toEqual([{ b: 2 }]);
    expect(splitter.push(Buffer.from('{"c":"\u00e9"}\n'))).toEqual([{ c: '\u00e9' }]);
  });

  it('joins a multi-byte character split between chunks', () => {
    const splitter = new JsonLineSplitter();
    const bytes = Buffer.from('{"c":"\u00e9"}\n');
    const cut = bytes.indexOf(0xc3) + 1;
    expect(splitter.push(bytes.subarray(0, cut))).toEqual([]);
    expect(splitter.push(bytes.subarray(cut))).toEqual([{ c: '\u00e9' }]);
  });
});

describe('dockerSinceParam', () => {
  it('formats seconds with a nanosecond fraction', () => {
    expect(dockerSinceParam(1714566896123)).toBe('1714566896.123000000');
    expect(dockerSinceParam(1714566896005)).toBe('1714566896.005000000');
    expect(dockerSinceParam(1714566896000)).toBe('1714566896.000000000');
  });
});
