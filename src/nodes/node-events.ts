/**
 * Reasons of the events the node pool records. Node events (objectKind 'Node') belong to
 * no tenant (tenantId ''): platform admins read them with GET /api/v1/events?node=ID.
 */
export const NODE_EVENT_REASONS = {
  /** Node: answered again (or for the first time). */
  nodeReady: 'NodeReady',
  /** Node: no successful heartbeat within the grace period. */
  nodeNotReady: 'NodeNotReady',
  nodeCordoned: 'NodeCordoned',
  nodeUncordoned: 'NodeUncordoned',
  nodeDrained: 'NodeDrained',
  /** Node: too many agents failed to start on it; skipped by the scheduler. */
  nodeUnhealthy: 'NodeUnhealthy',
  nodeHealthy: 'NodeHealthy',
  /** Agent: its node went NotReady (rescheduled, failed or recorded as stopped). */
  nodeLost: 'NodeLost',
  /** Agent: moved off a node by a drain. */
  drained: 'Drained',
} as const;

/** tenantId of node events. */
export const NODE_EVENT_TENANT = '';
