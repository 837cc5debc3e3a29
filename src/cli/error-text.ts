import { DomainError } from '../domain/errors.js';

/** The one line printed for a failure: `Error: <message> (<code>)`. */
export function errorText(err: unknown): string {
  if (err instanceof DomainError) return `Error: ${err.message} (${err.code})`;
  if (err instanceof Error) return `Error: ${err.message}`;
  return `Error: ${String(err)}`;
}
