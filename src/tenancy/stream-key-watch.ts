import type { Clock } from '../domain/clock.js';
import type { UnauthenticatedError } from '../domain/errors.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Principal } from '../services/agent-service.js';

/** Whether the credential behind a principal still holds, as the store says now. */
export type CredentialState = { valid: true; expiresAtMs?: number | undefined } | { valid: false; error: UnauthenticatedError };

export interface StreamKeyWatchOptions {
  /** Looks the principal's credential up again (ApiKeyService.check): one primary-key read. */
  check: (principal: Principal) => Promise<CredentialState>;
  /**
   * Time between two checks of one open stream. A revocation on any replica ends the stream
   * within this time; each open stream costs one store read per interval. Expiry needs no
   * polling: a check is also scheduled for the moment the key expires.
   * @default 2_000
   */
  intervalMs?: number | undefined;
  clock: Clock;
  logger?: Logger | undefined;
}

/**
 * Re-checks the key of a long-lived response (SSE events, log follow) while it is open:
 * a request is authenticated once, at its start, so without this a stream opened before a
 * revocation or expiry would keep delivering. Calls `onInvalid` once, with the error a new
 * request would get (API_KEY_REVOKED, API_KEY_EXPIRED, ...), and stops; stops silently when
 * `signal` aborts. A store error keeps the stream (the next check decides): a database blip
 * must not cut every open stream.
 */
export function watchStreamKey(principal: Principal, o: StreamKeyWatchOptions, signal: AbortSignal, onInvalid: (error: UnauthenticatedError) => void): void {
  const intervalMs = o.intervalMs ?? 2_000;
  const logger = o.logger ?? silentLogger;
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => clearTimeout(timer);
  signal.addEventListener('abort', stop, { once: true });
  const schedule = (expiresAtMs: number | undefined): void => {
    if (signal.aborted) return;
    // +1 ms: the key counts as expired from expiresAt on (expiresAt <= now), so a check at
    // exactly that instant must see it expired, not schedule another one for 0 ms.
    const untilExpiryMs = expiresAtMs === undefined ? Infinity : Math.max(0, expiresAtMs - o.clock.now() + 1);
    timer = setTimeout(run, Math.min(intervalMs, untilExpiryMs));
  };
  const run = (): void => {
    o.check(principal).then(
      (state) => {
        if (signal.aborted) return;
        if (!state.valid) {
          signal.removeEventListener('abort', stop);
          onInvalid(state.error);
          return;
        }
        schedule(state.expiresAtMs);
      },
      (err: unknown) => {
        logger.warn({ err, subject: principal.subject }, 'could not re-check the key of an open stream; checking again later');
        schedule(undefined);
      },
    );
  };
  run();
}
