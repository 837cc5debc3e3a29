import { DomainError } from '../domain/errors.js';

/** The platform answered with an error body; `code` is the server's stable code. */
export class ApiError extends DomainError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    details?: unknown,
  ) {
    super(code, message, details);
  }
}
