import { DomainError, UnavailableError } from '../../domain/errors.js';

/** What docker-modem attaches to the errors it builds from HTTP responses. */
interface ModemError {
  statusCode?: unknown;
  json?: unknown;
  message?: unknown;
  name?: unknown;
  code?: unknown;
}

/** HTTP status of a Docker API error, undefined for transport errors. */
export function dockerStatusCode(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const status = (err as ModemError).statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The daemon's own message ("No such image: x") rather than modem's wrapper text. */
export function dockerErrorMessage(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const { json, message } = err as ModemError;
  if (typeof json === 'object' && json !== null && typeof (json as { message?: unknown }).message === 'string') {
    return (json as { message: string }).message;
  }
  if (Buffer.isBuffer(json) && json.length > 0) return json.toString('utf8').trim();
  return typeof message === 'string' ? message.trim() : String(err);
}

export interface DockerCallContext {
  /** e.g. "create", "start", "inspect". */
  operation: string;
  nodeId: string;
  endpoint: string;
  containerId?: string | undefined;
}

/** The daemon answered with an error status we have no domain meaning for. */
export class DockerApiError extends DomainError {
  constructor(
    readonly statusCode: number,
    readonly context: DockerCallContext,
    readonly dockerMessage: string,
  ) {
    super(
      'RUNTIME_ERROR',
      `docker ${context.operation}${context.containerId ? ` ${context.containerId}` : ''} on node ${context.nodeId} failed (HTTP ${statusCode}): ${dockerMessage}`,
      { ...context, statusCode, dockerMessage },
    );
  }
}

/**
 * Turns a failed Docker call into the error the port promises: the caller's own abort
 * reason when it aborted, UnavailableError for timeouts and transport failures (so
 * controllers know to retry later), DockerApiError for any other daemon answer.
 */
export function toRuntimeError(err: unknown, context: DockerCallContext, callerSignal: AbortSignal | undefined, timedOut: boolean): Error {
  if (callerSignal?.aborted) {
    const reason: unknown = callerSignal.reason;
    return reason instanceof Error ? reason : new DOMException('The operation was aborted', 'AbortError');
  }
  if (timedOut) {
    return new UnavailableError(
      'RUNTIME_TIMEOUT',
      `docker ${context.operation} on node ${context.nodeId} (${context.endpoint}) did not answer in time`,
      context,
    );
  }
  const status = dockerStatusCode(err);
  if (status === undefined) {
    const code = typeof err === 'object' && err !== null ? (err as ModemError).code : undefined;
    return new UnavailableError(
      'RUNTIME_UNAVAILABLE',
      `docker on node ${context.nodeId} (${context.endpoint}) is not reachable: ${dockerErrorMessage(err)}`,
      { ...context, cause: typeof code === 'string' ? code : undefined },
    );
  }
  return new DockerApiError(status, context, dockerErrorMessage(err));
}
