import type { Selectable } from 'kysely';
import type { Agent, AgentSpec, AgentStatus, DesiredState } from '../domain/agent.js';
import type { PlatformEvent } from '../domain/event.js';
import type { Taint } from '../domain/node.js';
import type { AgentsTable, EventsTable, NodesTable } from './schema.js';
import type { NewAgent, NodeState } from './store.js';

/** The row of a new agent (version 1, updatedAt = createdAt). */
export function newAgentRow(agent: NewAgent): AgentsTable {
  return {
    id: agent.id,
    tenant_id: agent.tenantId,
    name: agent.name,
    labels: JSON.stringify(agent.labels),
    spec: JSON.stringify(agent.spec),
    desired: agent.desired,
    phase: agent.status.phase,
    node: agent.status.node ?? null,
    status: JSON.stringify(agent.status),
    created_at: agent.createdAt,
    updated_at: agent.createdAt,
    version: 1,
    // Set by admission in the same transaction (tenancy); a new agent is never Running.
    holds_quota: 0,
    accrued_until: null,
  };
}

export function agentFromRow(row: Selectable<AgentsTable>): Agent {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    labels: JSON.parse(row.labels) as Record<string, string>,
    spec: JSON.parse(row.spec) as AgentSpec,
    desired: row.desired as DesiredState,
    status: JSON.parse(row.status) as AgentStatus,
    // Number(): a driver that returns int8 as string (pg without our type parser) still yields numbers.
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    version: Number(row.version),
  };
}

export function eventFromRow(row: Selectable<EventsTable>): PlatformEvent {
  const event: PlatformEvent = {
    id: Number(row.id),
    tenantId: row.tenant_id,
    objectKind: row.object_kind as PlatformEvent['objectKind'],
    objectId: row.object_id,
    type: row.type as PlatformEvent['type'],
    reason: row.reason,
    message: row.message,
    time: Number(row.time),
  };
  // SQL NULL means "no data"; JSON null (the text 'null') is kept as null.
  if (row.data !== null) event.data = JSON.parse(row.data) as unknown;
  return event;
}

export function nodeStateRow(state: NodeState): NodesTable {
  return {
    id: state.id,
    cordoned: state.cordoned ? 1 : 0,
    unhealthy: state.unhealthy ? 1 : 0,
    labels: state.labels === undefined ? null : JSON.stringify(state.labels),
    taints: state.taints === undefined ? null : JSON.stringify(state.taints),
    updated_at: state.updatedAt,
  };
}

export function nodeStateFromRow(row: Selectable<NodesTable>): NodeState {
  const state: NodeState = {
    id: row.id,
    cordoned: Number(row.cordoned) === 1,
    unhealthy: Number(row.unhealthy) === 1,
    updatedAt: Number(row.updated_at),
  };
  if (row.labels !== null) state.labels = JSON.parse(row.labels) as Record<string, string>;
  if (row.taints !== null) state.taints = JSON.parse(row.taints) as Taint[];
  return state;
}
