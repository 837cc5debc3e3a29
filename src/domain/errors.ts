/**
 * Domain errors. They look like HTTP errors but are not: exactly one place
 * (src/api/error-handler.ts) maps `code` to an HTTP status. Every error carries a
 * stable machine-readable `code`, a message that says what to fix, and optional
 * structured `details`.
 */
export class DomainError extends Error {
  readonly code: string;
  readonly details: unknown;
  constructor(code: string, message: string, details?: unknown) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** Input that does not satisfy the schema (400 / 422). */
export class InputError extends DomainError {
  constructor(message: string, details?: unknown, code = 'VALIDATION_FAILED') {
    super(code, message, details);
  }
}

export class NotFoundError extends DomainError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, message, details);
  }
}

/** The request conflicts with current state (duplicate name, version mismatch, ...). */
export class ConflictError extends DomainError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, message, details);
  }
}

export class UnauthenticatedError extends DomainError {
  constructor(message: string, code = 'UNAUTHENTICATED') {
    super(code, message);
  }
}

export class ForbiddenError extends DomainError {
  constructor(message: string, details?: unknown, code = 'FORBIDDEN') {
    super(code, message, details);
  }
}

/** A dependency (store, runtime) is not reachable right now; retrying may help. */
export class UnavailableError extends DomainError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, message, details);
  }
}

/** Optimistic-concurrency failure: somebody else updated the record first. */
export class VersionConflictError extends ConflictError {
  constructor(readonly agentId: string, expectedVersion: number) {
    super('VERSION_CONFLICT', `agent ${agentId} was modified concurrently (expected version ${expectedVersion}); re-read and retry`, {
      agentId,
      expectedVersion,
    });
  }
}

export const agentNotFound = (id: string): NotFoundError =>
  new NotFoundError('AGENT_NOT_FOUND', `agent "${id}" does not exist`, { agentId: id });
