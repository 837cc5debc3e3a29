/** Who holds the leader lease. */
export interface LeaseHolder {
  replicaId: string;
  /**
   * Grows by at least one with every acquisition, across all replicas: a write carrying
   * an older token than the newest seen comes from a deposed leader.
   */
  fencingToken: number;
}

/**
 * A lease that at most one replica holds at a time, expiring `ttlMs` after its last
 * renewal unless renewed. Adapters: redis (RedisLeaderLease). Used by LeaderElector.
 */
export interface LeaderLease {
  readonly kind: string;
  /** Lease duration; a holder that stops renewing loses the lease after this long. */
  readonly ttlMs: number;
  /**
   * Takes the lease for `replicaId` if nobody holds it. Returns the new fencing token,
   * or undefined when another replica holds it. Throws when the backend cannot be reached.
   */
  acquire(replicaId: string, signal?: AbortSignal): Promise<number | undefined>;
  /**
   * Extends the lease for another ttlMs if (replicaId, fencingToken) still holds it.
   * False when it does not (it lapsed and maybe someone else took it). Throws when the
   * backend cannot be reached.
   */
  renew(replicaId: string, fencingToken: number, signal?: AbortSignal): Promise<boolean>;
  /** Gives the lease up if still held by (replicaId, fencingToken); no-op otherwise. */
  release(replicaId: string, fencingToken: number): Promise<void>;
  /**
   * Moves the token counter up to at least `atLeast` (never down), so that the next
   * acquire returns a larger token. For a counter that went back (Redis restored from an
   * old snapshot, or flushed) while the store still records a token from before: without
   * it, every new leader would be fenced out until the counter caught up.
   */
  advanceFencingToken(atLeast: number): Promise<void>;
  /** The current holder, or undefined when the lease is free. */
  holder(signal?: AbortSignal): Promise<LeaseHolder | undefined>;
  close(): Promise<void>;
}
