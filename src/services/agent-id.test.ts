import { describe, expect, it } from 'vitest';
import { newAgentId } from './agent-service.js';
import { Id } from '../api/schemas/common-schema.js';

describe('newAgentId', () => {
  it('is 20 lowercase base32 characters that the API accepts as an id', () => {
    for (let i = 0; i < 100; i++) {
      const id = newAgentId();
      expect(id).toMatch(/^[0-9a-z]{20}$/);
      expect(Id.safeParse(id).success).toBe(true);
    }
  });

  it('sorts by creation time as a string (time first), whatever the random part', () => {
    const times = [0, 1, 31, 32, 1_000, 1_767_225_600_000, 1_767_225_600_001, 2 ** 49];
    const ids = times.map((t) => newAgentId(t));
    expect([...ids].sort()).toEqual(ids);
    expect(newAgentId(1_767_225_600_000).slice(0, 10)).toBe(newAgentId(1_767_225_600_000).slice(0, 10));
  });

  it('differs in the random part for ids of the same millisecond', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => newAgentId(5)));
    expect(ids.size).toBe(10_000);
  });
});
