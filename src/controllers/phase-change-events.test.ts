import { describe, expect, it } from 'vitest';
import { withPhaseChange, withPhaseData } from './phase-change-events.js';

describe('withPhaseChange', () => {
  it('leaves the events alone when the phase does not change', () => {
    const events = [{ type: 'Warning' as const, reason: 'FailedScheduling', message: '0/2 nodes are available', data: { feasibleNodes: 0 } }];
    expect(withPhaseChange({ phase: 'Pending' }, { phase: 'Pending', reason: 'Unschedulable' }, events)).toBe(events);
    expect(withPhaseChange({ phase: 'Running' }, { phase: 'Running' }, [])).toEqual([]);
  });

  it('names the change on the last event of the write, keeping its own data', () => {
    const out = withPhaseChange({ phase: 'Running' }, { phase: 'Pending', reason: 'CrashLoopBackOff' }, [
      { type: 'Warning', reason: 'OOMKilled', message: 'killed' },
      { type: 'Warning', reason: 'BackOff', message: 'restarting in 1s' },
    ]);
    expect(out).toEqual([
      { type: 'Warning', reason: 'OOMKilled', message: 'killed' },
      { type: 'Warning', reason: 'BackOff', message: 'restarting in 1s', data: { from: 'Running', to: 'Pending' } },
    ]);
    const scheduled = withPhaseChange({ phase: 'Pending' }, { phase: 'Starting' }, [{ type: 'Normal', reason: 'Scheduled', message: 'on n1', data: { feasibleNodes: 1, scores: [] } }]);
    expect(scheduled[0]!.data).toEqual({ feasibleNodes: 1, scores: [], from: 'Pending', to: 'Starting' });
  });

  it('makes one event from the new status when the write had none', () => {
    expect(withPhaseChange({ phase: 'Pending' }, { phase: 'Starting', reason: 'ContainerStarting', message: 'starting container' }, [])).toEqual([
      { type: 'Normal', reason: 'ContainerStarting', message: 'starting container', data: { from: 'Pending', to: 'Starting' } },
    ]);
    expect(withPhaseChange({ phase: 'Starting' }, { phase: 'Failed' }, [])).toEqual([{ type: 'Warning', reason: 'Failed', message: 'Starting -> Failed', data: { from: 'Starting', to: 'Failed' } }]);
  });

  it('keeps a non-object data value beside the phases', () => {
    expect(withPhaseData(['a'], { from: 'Pending', to: 'Starting' })).toEqual({ detail: ['a'], from: 'Pending', to: 'Starting' });
    expect(withPhaseData(null, { from: 'Pending', to: 'Starting' })).toEqual({ from: 'Pending', to: 'Starting' });
  });
});
