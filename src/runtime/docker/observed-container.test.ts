import { describe, expect, it } from 'vitest';
import { dockerTimeToMs, observedFromInspect, observedFromListEntry } from './observed-container.js';

const labels = { 'io.agent-platform.agent-id': 'a1', 'io.agent-platform.managed': 'true' };

describe('observedFromInspect', () => {
  it('maps an OOM-killed container', () => {
    expect(
      observedFromInspect({
        Id: 'c1',
        State: {
          Status: 'exited',
          ExitCode: 137,
          OOMKilled: true,
          Error: '',
          StartedAt: '2024-05-01T12:00:00.123456789Z',
          FinishedAt: '2024-05-01T12:00:01.5Z',
        },
        Config: { Labels: labels },
      }),
    ).toEqual({
      containerId: 'c1',
      agentId: 'a1',
      state: 'exited',
      exitCode: 137,
      oomKilled: true,
      error: undefined,
      startedAt: Date.UTC(2024, 4, 1, 12, 0, 0, 123),
      finishedAt: Date.UTC(2024, 4, 1, 12, 0, 1, 500),
    });
  });

  it('maps a created container: no times, no exit code', () => {
    expect(
      observedFromInspect({
        Id: 'c2',
        State: { Status: 'created', ExitCode: 0, StartedAt: '0001-01-01T00:00:00Z', FinishedAt: '0001-01-01T00:00:00Z' },
        Config: { Labels: null },
      }),
    ).toEqual({
      containerId: 'c2',
      agentId: '',
      state: 'created',
      exitCode: undefined,
      oomKilled: false,
      error: undefined,
      startedAt: undefined,
      finishedAt: undefined,
    });
  });

  it('hides the previous run while a restarted container runs, and keeps a start error', () => {
    const observed = observedFromInspect({
      Id: 'c3',
      State: {
        Status: 'running',
        ExitCode: 4,
        Error: 'exec: "nope": executable file not found',
        StartedAt: '2024-05-01T12:00:05Z',
        FinishedAt: '2024-05-01T12:00:01Z',
      },
      Config: { Labels: labels },
    });
    expect(observed).toMatchObject({ state: 'running', exitCode: undefined, finishedAt: undefined, error: 'exec: "nope": executable file not found' });
  });

  it('maps unknown states to dead', () => {
    expect(observedFromInspect({ Id: 'c4', State: { Status: 'weird' } }).state).toBe('dead');
  });
});

describe('observedFromListEntry', () => {
  it('parses the exit code from the status text of an exited container', () => {
    expect(observedFromListEntry({ Id: 'c1', State: 'exited', Status: 'Exited (137) 5 seconds ago', Labels: labels })).toEqual({
      containerId: 'c1',
      agentId: 'a1',
      state: 'exited',
      exitCode: 137,
      oomKilled: false,
      error: undefined,
      startedAt: undefined,
      finishedAt: undefined,
    });
  });

  it('has no exit code while running or created', () => {
    expect(observedFromListEntry({ Id: 'c', State: 'running', Status: 'Up 2 minutes', Labels: labels }).exitCode).toBeUndefined();
    expect(observedFromListEntry({ Id: 'c', State: 'created', Status: 'Created', Labels: labels }).exitCode).toBeUndefined();
  });
});

describe('dockerTimeToMs', () => {
  it('treats the zero time and garbage as never', () => {
    expect(dockerTimeToMs('0001-01-01T00:00:00Z')).toBeUndefined();
    expect(dockerTimeToMs('')).toBeUndefined();
    expect(dockerTimeToMs(undefined)).toBeUndefined();
    expect(dockerTimeToMs('garbage')).toBeUndefined();
  });
});
