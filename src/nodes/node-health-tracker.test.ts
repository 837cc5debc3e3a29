import { describe, expect, it } from 'vitest';
import { NODE_FAULT_REASONS, NodeHealthTracker } from './node-health-tracker.js';

describe('NodeHealthTracker', () => {
  it('crosses the threshold at the n-th failure inside the window, per node', () => {
    const t = new NodeHealthTracker({ failureThreshold: 3, windowMs: 1000 });
    expect(t.recordFailure('a', 0)).toBe(false);
    expect(t.recordFailure('b', 10)).toBe(false);
    expect(t.recordFailure('a', 500)).toBe(false);
    expect(t.recordFailure('a', 900)).toBe(true);
    expect(t.count('b', 900)).toBe(1);
  });

  it('forgets failures older than the window, and on reset', () => {
    const t = new NodeHealthTracker({ failureThreshold: 2, windowMs: 1000 });
    t.recordFailure('a', 0);
    expect(t.recordFailure('a', 1000)).toBe(false); // the first one just left the window
    expect(t.recordFailure('a', 1500)).toBe(true);
    t.reset('a');
    expect(t.count('a', 1500)).toBe(0);
  });

  it('counts start failures, not user exit codes or missing images', () => {
    expect([...NODE_FAULT_REASONS].sort()).toEqual(['StartError', 'StartTimeout']);
    expect(NODE_FAULT_REASONS.has('Error')).toBe(false);
    expect(NODE_FAULT_REASONS.has('ImageNotFound')).toBe(false);
  });
});
