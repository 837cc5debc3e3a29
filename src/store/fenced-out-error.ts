import { ConflictError } from '../domain/errors.js';

/**
 * A write carried a leader fencing token smaller than the one the store has recorded:
 * another replica became leader since this one did (this one was paused, partitioned, or
 * its lease lapsed unnoticed). Nothing was written. The writer must stop leading, not
 * retry: its next term (if any) comes with a new token.
 */
export class FencedOutError extends ConflictError {
  constructor(
    readonly fencingToken: number,
    readonly recordedToken: number,
  ) {
    super(
      'LEADER_FENCED_OUT',
      `write refused: a newer leader recorded fencing token ${recordedToken}, this replica holds ${fencingToken}; it must step down and campaign again`,
      { fencingToken, recordedToken },
    );
  }
}
