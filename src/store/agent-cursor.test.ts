import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { decodeAgentCursor, encodeAgentCursor } from './agent-cursor.js';
import { InputError } from '../domain/errors.js';

describe('agent cursor', () => {
  it('round-trips any position', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.string(), (createdAt, id) => {
        expect(decodeAgentCursor(encodeAgentCursor({ createdAt, id }))).toEqual({ createdAt, id });
      }),
    );
  });

  it('is URL-safe', () => {
    expect(encodeAgentCursor({ createdAt: 1_700_000_000_000, id: '??>>~~ agent/ü' })).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it.each(['', 'not-base64!', Buffer.from('{"a":1}').toString('base64url'), Buffer.from('[1.5,"x"]').toString('base64url'), Buffer.from('[1,2]').toString('base64url')])(
    'rejects %j with INVALID_CURSOR',
    (bad) => {
      expect(() => decodeAgentCursor(bad)).toThrow(InputError);
      try {
        decodeAgentCursor(bad);
      } catch (err) {
        expect((err as InputError).code).toBe('INVALID_CURSOR');
      }
    },
  );
});
