import { describe, it, expect } from 'vitest';
import { agentJson } from '../../test/cli/agent-json-fixture.js';
import type { EventJson } from './api-types.js';
import { describeAgent, DESCRIBE_EVENT_LIMIT } from './describe-agent.js';

const NOW = Date.parse('2026-01-01T00:10:00.000Z');

const event = (i: number, overrides: Partial<EventJson> = {}): EventJson => ({
  id: i,
  objectKind: 'Agent',
  objectId: 'a1b2c3d4e5f6a7b8',
  type: 'Normal',
  reason: `Reason${i}`,
  message: `message ${i}`,
  time: new Date(Date.parse('2026-01-01T00:00:00.000Z') + i * 1000).toISOString(),
  ...overrides,
});

describe('describeAgent', () => {
  const agent = agentJson({
    labels: { team: 'ml', tier: 'batch' },
    spec: { command: ['python3', '-m', 'agent'], args: ['--task', 'sum up'], env: { MODE: 'fast', LEVEL: '3' }, timeoutSeconds: 600 },
    status: { phase: 'Failed', reason: 'OOMKilled', message: 'container used more than 128Mi', exitCode: 137, node: 'node-1', restarts: 1, startedAt: '2026-01-01T00:01:00.000Z', finishedAt: '2026-01-01T00:05:00.000Z' },
  });

  it('shows identity, status and spec sections with aligned labels', () => {
    const text = describeAgent(agent, [], { nowMs: NOW });
    expect(text).toMatch(/^Name: +summarizer$/m);
    expect(text).toMatch(/^Labels: +team=ml\n +tier=batch$/m);
    expect(text).toMatch(/^Created: +2026-01-01T00:00:00.000Z \(10m ago\)$/m);
    expect(text).toMatch(/^Status:\n {2}Phase: +Failed$/m);
    expect(text).toMatch(/^ {2}Reason: +OOMKilled$/m);
    expect(text).toMatch(/^ {2}Exit Code: +137$/m);
    expect(text).toMatch(/^ {2}Finished: +2026-01-01T00:05:00.000Z \(5m ago\)$/m);
    expect(text).toMatch(/^ {2}Command: +python3 -m agent$/m);
    expect(text).toMatch(/^ {2}Args: +--task 'sum up'$/m);
    expect(text).toMatch(/^ {2}Environment: +MODE=fast\n +LEVEL=3$/m);
    expect(text).toMatch(/^ {2}Requests: +cpu: 100m, memory: 128Mi, gpu: 0$/m);
    expect(text).toMatch(/^ {2}Timeout: +600s$/m);
    expect(text).toMatch(/^Events: +<none>$/m);
    // values in one section start in the same column
    const statusValues = text.split('\n').filter((l) => /^ {2}(Phase|Reason|Container ID):/.test(l)).map((l) => l.search(/(?<=: +)\S/));
    expect(new Set(statusValues).size).toBe(1);
  });

  it('lists the most recent events oldest first with their age', () => {
    const events = Array.from({ length: DESCRIBE_EVENT_LIMIT + 5 }, (_, i) => event(i));
    const text = describeAgent(agent, events.reverse(), { nowMs: NOW });
    const section = text.slice(text.indexOf('Events:'));
    expect(section).toMatch(/^ {2}Type +Reason +Age +Message$/m);
    expect(section).not.toMatch(/Reason4\b/);
    expect(section).toMatch(/Reason5 +9m +message 5/);
    expect(section.trimEnd().split('\n').at(-1)).toMatch(/Normal +Reason24 +9m +message 24$/);
  });

  it('says why events are missing instead of failing', () => {
    expect(describeAgent(agent, undefined, { nowMs: NOW, eventsError: 'forbidden (FORBIDDEN)' })).toMatch(/^Events: +<unable to fetch: forbidden \(FORBIDDEN\)>$/m);
  });
});
