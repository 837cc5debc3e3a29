import { describe, it, expect } from 'vitest';
import { agentJson } from '../../test/cli/agent-json-fixture.js';
import { evaluateWait, parseWaitCondition } from './wait-condition.js';

describe('parseWaitCondition', () => {
  it('reads phases case-insensitively, several as "any of", and delete', () => {
    expect(parseWaitCondition('phase=Succeeded')).toEqual({ kind: 'phase', phases: ['Succeeded'] });
    expect(parseWaitCondition('phase=running,failed')).toEqual({ kind: 'phase', phases: ['Running', 'Failed'] });
    expect(parseWaitCondition('delete')).toEqual({ kind: 'delete' });
  });
  it('rejects unknown conditions and phases', () => {
    expect(() => parseWaitCondition('condition=Ready')).toThrow(/--for=phase=<Phase>/);
    expect(() => parseWaitCondition('phase=Done')).toThrow(/unknown phase "Done"/);
  });
});

describe('evaluateWait', () => {
  it('is done when the phase is one of the wanted', () => {
    expect(evaluateWait(agentJson({ status: { phase: 'Running' } }), ['Running', 'Succeeded'])).toEqual({ done: true });
  });

  it('keeps waiting through non-terminal phases', () => {
    for (const phase of ['Pending', 'Starting', 'Running', 'Stopping', 'Deleting'] as const) {
      expect(evaluateWait(agentJson({ status: { phase } }), ['Succeeded'])).toEqual({ done: false, stuck: false });
    }
  });

  it('is stuck in an unwanted terminal phase and says why', () => {
    const verdict = evaluateWait(agentJson({ name: 'job', status: { phase: 'Failed', reason: 'Error', exitCode: 3, message: 'boom' } }), ['Succeeded']);
    expect(verdict).toEqual({ done: false, stuck: true, why: 'agent "job" is Failed (reason Error, exit code 3, message: boom), not Succeeded' });
  });

  it('keeps waiting while a restart is scheduled or a start was requested', () => {
    expect(evaluateWait(agentJson({ status: { phase: 'Failed', nextAttemptAt: '2026-01-01T00:00:10Z' } }), ['Running']).done).toBe(false);
    expect(evaluateWait(agentJson({ status: { phase: 'Failed', nextAttemptAt: '2026-01-01T00:00:10Z' } }), ['Running'])).toHaveProperty('stuck', false);
    expect(evaluateWait(agentJson({ desiredState: 'running', status: { phase: 'Stopped' } }), ['Running'])).toHaveProperty('stuck', false);
    expect(evaluateWait(agentJson({ desiredState: 'stopped', status: { phase: 'Stopped' } }), ['Running'])).toHaveProperty('stuck', true);
  });
});
