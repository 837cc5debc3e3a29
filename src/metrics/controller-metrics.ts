/** Outcome of one placement attempt: a node was found, or none fits right now. */
export type SchedulingResult = 'scheduled' | 'unschedulable';

/** Outcome of one reconcile of one key. */
export type ReconcileResult = 'success' | 'conflict' | 'error';

/**
 * What the controllers report for metrics. Optional everywhere it is taken: a controller
 * without it runs the same, only unobserved. Implemented by PlatformMetrics.
 */
export interface ControllerMetrics {
  /** One placement attempt of one agent and how long the placer took, in seconds. */
  observeScheduling(result: SchedulingResult, seconds: number): void;
  /** One reconcile of one key (including any placement and container start it did), in seconds. */
  observeReconcile(result: ReconcileResult, seconds: number): void;
}
