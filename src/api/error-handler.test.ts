import { describe, expect, it } from 'vitest';
import { ConflictError, ForbiddenError, InputError, NotFoundError, UnauthenticatedError, UnavailableError, VersionConflictError, agentNotFound } from '../domain/errors.js';
import { statusFor } from './error-handler.js';

describe('statusFor: domain errors -> HTTP', () => {
  it.each([
    [new InputError('bad'), 400],
    [new InputError('bad', undefined, 'IDEMPOTENCY_KEY_INVALID'), 422],
    [new UnauthenticatedError('who?'), 401],
    [new ForbiddenError('no'), 403],
    [new ForbiddenError('quota', {}, 'QUOTA_EXCEEDED'), 403],
    [agentNotFound('x'), 404],
    [new NotFoundError('NODE_NOT_FOUND', 'x'), 404],
    [new ConflictError('AGENT_NAME_TAKEN', 'x'), 409],
    [new VersionConflictError('a', 1), 409],
    [new UnavailableError('STORE_UNAVAILABLE', 'down'), 503],
  ] as const)('%s -> %d', (err, status) => {
    expect(statusFor(err)).toBe(status);
  });
  it('keeps the stable code and instanceof', () => {
    const e = agentNotFound('abc');
    expect(e.code).toBe('AGENT_NOT_FOUND');
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.name).toBe('NotFoundError');
    expect(e.details).toEqual({ agentId: 'abc' });
  });
});

describe('statusFor: runtime failures are not the caller\'s mistake', () => {
  it('maps Docker and Kubernetes API errors to 502', async () => {
    const { DomainError } = await import('../domain/errors.js');
    expect(statusFor(new DomainError('RUNTIME_ERROR', 'daemon said no'))).toBe(502);
    expect(statusFor(new DomainError('KUBERNETES_API_ERROR', 'apiserver said no'))).toBe(502);
    expect(statusFor(new DomainError('RATE_LIMITED', 'slow down'))).toBe(429);
  });
});
