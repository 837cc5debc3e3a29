/** Public surface of the pure scheduler. */
export type { CandidateScore, ScheduledDecision, ScheduleDecision, ScoreBreakdown, ScorePluginName, UnschedulableDecision } from './decision.js';
export { explainScores } from './explain-scores.js';
export { naiveSchedule } from './naive-scheduler.js';
export { NodePool } from './node-pool.js';
export { numFeasibleNodesToFind } from './num-feasible-nodes-to-find.js';
export { REASONS, untoleratedTaintReason } from './reasons.js';
export { Scheduler } from './scheduler.js';
export type { CompiledSchedulerConfig, ResourceWeights, SchedulerOptions } from './scheduler-config.js';
export { compileSchedulerConfig } from './scheduler-config.js';
export type { SchedulableSpec, SchedulingRequest, SchedulingSnapshot } from './scheduling-snapshot.js';
