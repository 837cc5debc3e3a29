import type { Agent, AgentStatus, DesiredState, AgentSpec, Phase } from '../domain/agent.js';
import type { NewPlatformEvent, PlatformEvent } from '../domain/event.js';
import type { Taint } from '../domain/node.js';

/** Fields for a new agent; the store assigns version 1. */
export interface NewAgent {
  id: string;
  tenantId: string;
  name: string;
  labels: Record<string, string>;
  spec: AgentSpec;
  desired: DesiredState;
  status: AgentStatus;
  createdAt: number;
}

export interface IdempotencyInput {
  key: string;
  /** Hash of the request body: the same key with a different body is refused. */
  requestHash: string;
}

export interface CreateAgentResult {
  agent: Agent;
  /** False when an earlier request with the same idempotency key created it. */
  created: boolean;
}

export interface AgentFilter {
  tenantId?: string | undefined;
  phase?: Phase[] | undefined;
  /** Every label must match exactly. */
  labels?: Record<string, string> | undefined;
  /** Only agents whose desired state is one of these. */
  desired?: DesiredState[] | undefined;
  node?: string | undefined;
  /** Page size (default 100, max 1000). */
  limit?: number | undefined;
  /** Opaque cursor from a previous page. */
  cursor?: string | undefined;
}

export interface AgentPage {
  items: Agent[];
  /** Absent on the last page. */
  nextCursor?: string | undefined;
}

/** A partial update; the version is bumped and updatedAt set by the store. */
export interface AgentUpdate {
  desired?: DesiredState;
  status?: AgentStatus;
  labels?: Record<string, string>;
  spec?: AgentSpec;
  updatedAt: number;
}

export interface EventFilter {
  tenantId?: string | undefined;
  objectKind?: PlatformEvent['objectKind'] | undefined;
  objectId?: string | undefined;
  /** Only events at or after this time (ms epoch). */
  sinceMs?: number | undefined;
  /** Only events with an id greater than this. */
  afterId?: number | undefined;
  limit?: number | undefined;
}

/**
 * What an operator set on a node and what must survive a control-plane restart: cordon,
 * the unhealthy mark, and label/taint overrides. Capacity and readiness are not stored:
 * they are read from the node's runtime again after a restart.
 */
export interface NodeState {
  id: string;
  cordoned: boolean;
  unhealthy: boolean;
  /** Replaces the configured labels when set. */
  labels?: Record<string, string> | undefined;
  /** Replaces the configured taints when set. */
  taints?: Taint[] | undefined;
  /** ms epoch of the last write; for `unhealthy`, when the mark was set (its cool-down counts from here). */
  updatedAt: number;
}

/**
 * Persistent state of the platform. Adapters: SQLite (embedded default) and
 * PostgreSQL, both through Kysely with the same migrations. No driver type crosses
 * this interface. Every adapter passes test/conformance/store-conformance.ts.
 */
export interface Store {
  /** Which adapter this is ("sqlite" | "postgres"). */
  readonly kind: string;
  /** Applies pending migrations; safe to call on every start and from several processes. */
  migrate(): Promise<void>;
  /** Throws UnavailableError(STORE_UNAVAILABLE) when the database does not answer. */
  ping(): Promise<void>;

  /**
   * Inserts an agent. Throws ConflictError(AGENT_NAME_TAKEN) when the tenant already
   * has an agent of that name. With `idempotency`, an earlier agent created under the
   * same (tenant, key) is returned with `created: false`; the same key with a different
   * request hash throws ConflictError(IDEMPOTENCY_KEY_REUSED). Atomic: concurrent calls
   * with one key create exactly one agent.
   */
  createAgent(agent: NewAgent, idempotency?: IdempotencyInput): Promise<CreateAgentResult>;
  getAgent(id: string): Promise<Agent | undefined>;
  getAgentByName(tenantId: string, name: string): Promise<Agent | undefined>;
  /** Ordered by createdAt then id; cursor-paginated. */
  listAgents(filter?: AgentFilter): Promise<AgentPage>;
  /**
   * Number of agents per (tenant, phase), for metrics; only pairs with at least one agent
   * appear. One grouped query, no rows read into memory.
   */
  countAgents(): Promise<{ tenantId: string; phase: Phase; count: number }[]>;
  /**
   * Compare-and-set on the version. Throws VersionConflictError when the stored
   * version differs, agentNotFound when the agent is gone. Returns the new record.
   */
  updateAgent(id: string, expectedVersion: number, update: AgentUpdate): Promise<Agent>;
  /** Removes the agent and its idempotency keys (events stay until pruned). No error if absent. */
  deleteAgent(id: string): Promise<void>;

  appendEvent(event: NewPlatformEvent): Promise<PlatformEvent>;
  /** Oldest first. */
  listEvents(filter?: EventFilter): Promise<PlatformEvent[]>;
  /** Deletes events older than the given time; returns how many. */
  pruneEvents(beforeMs: number): Promise<number>;

  /** Every stored node state, ordered by id. */
  listNodeStates(): Promise<NodeState[]>;
  /** Inserts or replaces the state of one node (last writer wins). */
  putNodeState(state: NodeState): Promise<void>;

  /** Small key/value settings (e.g. the hashed bootstrap admin token). */
  getSetting(key: string): Promise<string | undefined>;
  /** Sets only when absent; returns the value now stored (first writer wins). */
  putSettingIfAbsent(key: string, value: string): Promise<string>;

  close(): Promise<void>;
}
