import { describe, expect, it } from 'vitest';
import type { EventJson } from '../api-types.js';
import { eventRow, eventTime, formatFixedRow } from './events-command.js';

const event = (over: Partial<EventJson> = {}): EventJson => ({
  id: 7,
  objectKind: 'Agent',
  objectId: 'abc123',
  type: 'Warning',
  reason: 'BackOff',
  message: 'exited with code 3; restarting in 1s (restart 1)',
  time: '2026-11-03T10:00:05.678Z',
  ...over,
});

describe('events output', () => {
  it('shows times to the second, in UTC', () => {
    expect(eventTime('2026-11-03T10:00:05.678Z')).toBe('2026-11-03T10:00:05Z');
    expect(eventTime('2026-11-03T10:00:05Z')).toBe('2026-11-03T10:00:05Z');
    expect(eventTime('not a time')).toBe('not a time');
  });

  it('makes TIME TYPE REASON OBJECT MESSAGE rows with multi-line messages on one line', () => {
    expect(eventRow(event({ message: 'line one\n  line two' }), 'agent/web')).toEqual(['2026-11-03T10:00:05Z', 'Warning', 'BackOff', 'agent/web', 'line one line two']);
  });

  it('pads watch rows to fixed widths so later rows line up with the header', () => {
    const widths = [20, 7, 16, 24];
    const header = formatFixedRow(['TIME', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'], widths);
    const row = formatFixedRow(eventRow(event(), 'agent/web'), widths);
    expect(header.indexOf('MESSAGE')).toBe(row.indexOf('exited'));
    expect(header.indexOf('REASON')).toBe(row.indexOf('BackOff'));
    expect(row.endsWith('(restart 1)\n')).toBe(true);
  });
});
