import { createHash, randomFillSync } from 'node:crypto';
import type { Agent, AgentSpec, DesiredState, Phase } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { agentNotFound, DomainError, ConflictError, InputError, VersionConflictError } from '../domain/errors.js';
import { parseCpuMillicores, parseMemoryMiB } from '../domain/quantity.js';
import type { Bus } from '../bus/bus.js';
import type { CreateBackpressure } from './create-backpressure.js';
import type { AgentFilter, AgentPage, Store } from '../store/store.js';
import type { EventRecorder } from '../controllers/event-recorder.js';
import type { DecisionEvent } from '../controllers/agent-decision.js';
import { phaseChangedEvent, withPhaseChange } from '../controllers/phase-change-events.js';
import type { CreateAgentRequest } from '../api/schemas/agent-schema.js';
import { QUOTA_EXCEEDED_REASON } from '../tenancy/quota.js';
import { splitEnv } from '../security/env-refs.js';

export interface Principal {
  /** Who: "admin" for the bootstrap token, else an API key id. */
  subject: string;
  tenantId: string;
  role: 'platform-admin' | 'tenant-admin' | 'member' | 'viewer';
}

export interface AgentServiceDefaults {
  cpu: string;
  memory: string;
}

/** Lowercase base32 in ASCII order, so that string order is numeric order. */
const ID_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

/**
 * 20 lowercase base32 characters: 10 of creation time in milliseconds (most significant
 * first), 10 random (50 bits). Time first keeps new agents together at the right edge of
 * every index keyed by id (the primary key, (phase, id), the events' object index), so a
 * commit writes a few pages instead of one random page per agent per index; with random
 * ids the WAL writes of each commit dominated the store's cost at 100,000 agents.
 */
export function newAgentId(nowMs: number = Date.now()): string {
  let out = '';
  let t = Math.max(0, Math.floor(nowMs));
  for (let i = 0; i < 10; i++) {
    out = ID_ALPHABET[t % 32]! + out;
    t = Math.floor(t / 32);
  }
  for (let i = 0; i < 10; i++) out += ID_ALPHABET[nextRandomByte() & 31];
  return out;
}

// randomBytes per id cost more than the rest of the id: draw from a refilled pool instead.
const randomPool = Buffer.alloc(4096);
let randomPoolAt = randomPool.length;
function nextRandomByte(): number {
  if (randomPoolAt === randomPool.length) {
    randomFillSync(randomPool);
    randomPoolAt = 0;
  }
  return randomPool[randomPoolAt++]!;
}

/**
 * Use cases on agents. Records desired state only; the controller makes it so.
 * Every method is scoped by the caller's tenant: another tenant's agent is "not found".
 */
export class AgentService {
  private readonly defaultCpuMillicores: number;
  private readonly defaultMemoryMiB: number;
  /** Checks and normalises the security fields of a new spec (src/security/spec-admission.ts); set by the wiring. */
  specAdmission?: ((principal: Principal, spec: AgentSpec) => Promise<AgentSpec>) | undefined;
  /** Holds creates while the controllers are behind (create-backpressure.ts); set by the wiring. */
  backpressure?: CreateBackpressure | undefined;

  constructor(
    private readonly store: Store,
    private readonly bus: Bus,
    private readonly clock: Clock,
    private readonly events: EventRecorder,
    defaults: AgentServiceDefaults,
  ) {
    this.defaultCpuMillicores = parseCpuMillicores(defaults.cpu, 'AGENT_PLATFORM_DEFAULT_CPU');
    this.defaultMemoryMiB = parseMemoryMiB(defaults.memory, 'AGENT_PLATFORM_DEFAULT_MEMORY');
  }

  toSpec(req: CreateAgentRequest): AgentSpec {
    const r = req.resources ?? {};
    const cpu = r.cpu ?? (r.limits?.cpu !== undefined ? Math.min(r.limits.cpu, this.defaultCpuMillicores) : this.defaultCpuMillicores);
    const memory = r.memory ?? (r.limits?.memory !== undefined ? Math.min(r.limits.memory, this.defaultMemoryMiB) : this.defaultMemoryMiB);
    const cpuLimit = r.limits?.cpu ?? cpu;
    const memoryLimit = r.limits?.memory ?? memory;
    if (cpu < 1) throw new InputError('resources.cpu: must be at least 1m', { field: 'resources.cpu' });
    if (memory < 6) throw new InputError('resources.memory: must be at least 6Mi (Docker\'s minimum)', { field: 'resources.memory' });
    if (cpuLimit < cpu) throw new InputError(`resources.limits.cpu (${cpuLimit}m) must not be below resources.cpu (${cpu}m)`, { field: 'resources.limits.cpu' });
    if (memoryLimit < memory) throw new InputError(`resources.limits.memory (${memoryLimit}Mi) must not be below resources.memory (${memory}Mi)`, { field: 'resources.limits.memory' });
    return {
      image: req.image,
      command: req.command ?? [],
      args: req.args ?? [],
      ...splitEnv(req.env),
      workingDir: req.workingDir,
      resources: { cpuMillicores: cpu, memoryMiB: memory, gpu: r.gpu ?? 0, cpuLimitMillicores: cpuLimit, memoryLimitMiB: memoryLimit },
      restartPolicy: req.restartPolicy ?? 'Never',
      schedulingPolicy: req.schedulingPolicy ?? 'balanced',
      priority: req.priority ?? 0,
      nodeSelector: req.nodeSelector ?? {},
      tolerations: req.tolerations ?? [],
      ...(req.affinity !== undefined ? { affinity: req.affinity } : {}),
      ...(req.topologySpread !== undefined ? { topologySpread: req.topologySpread } : {}),
      timeoutSeconds: req.timeoutSeconds,
      ...(req.isolation !== undefined ? { isolation: req.isolation } : {}),
      ...(req.network !== undefined ? { network: req.network } : {}),
      ...(req.expose !== undefined && req.expose.length > 0 ? { expose: req.expose } : {}),
    };
  }

  /**
   * Records a new agent (Pending) for the controller. May first wait while the controllers
   * are behind; `signal` (the client going away; made only if the create has to wait) ends
   * that wait with nothing created.
   */
  async create(
    principal: Principal,
    req: CreateAgentRequest,
    idempotencyKey?: string,
    rawBody?: unknown,
    signal?: AbortSignal | (() => AbortSignal),
  ): Promise<{ agent: Agent; created: boolean }> {
    const spec = this.specAdmission ? await this.specAdmission(principal, this.toSpec(req)) : this.toSpec(req);
    await this.backpressure?.wait(signal);
    const now = this.clock.now();
    // Only a request with an Idempotency-Key is compared with an earlier one.
    const requestHash = idempotencyKey ? createHash('sha256').update(JSON.stringify(rawBody ?? req)).digest('hex') : '';
    const id = newAgentId();
    const { agent, created, events } = await this.store
      .createAgent(
      {
        id,
        tenantId: principal.tenantId,
        name: req.name,
        labels: req.labels ?? {},
        spec,
        desired: 'running',
        status: { phase: 'Pending', reason: 'Created', message: 'waiting to be scheduled', restarts: 0, phaseSince: now },
        createdAt: now,
      },
      idempotencyKey ? { key: idempotencyKey, requestHash } : undefined,
      // Stored in the create's transaction: no second commit to wait for.
      [this.events.stamp({ tenantId: principal.tenantId, objectKind: 'Agent', objectId: id, type: 'Normal', reason: 'Created', message: `agent ${req.name} created (image ${spec.image})` })],
      )
      .catch(async (err: unknown) => {
        // A rejected create leaves no agent to hang an event on: record it on the tenant,
        // so operators see quota pressure in the event stream and not only in 403s.
        if (err instanceof DomainError && err.code === 'QUOTA_EXCEEDED') {
          await this.events.record({ tenantId: principal.tenantId, objectKind: 'Tenant', objectId: principal.tenantId, type: 'Warning', reason: 'QuotaExceeded', message: `create of agent ${req.name} rejected: ${err.message}`, data: err.details });
        }
        throw err;
      });
    if (created) {
      this.events.published(events);
      // Admission (quota) happened in the store, in the insert's transaction; a tenant in
      // queue mode gets the agent back Pending with reason QuotaExceeded.
      if (agent.status.reason === QUOTA_EXCEEDED_REASON) {
        await this.events.record({ tenantId: agent.tenantId, objectKind: 'Agent', objectId: agent.id, type: 'Warning', reason: 'QuotaExceeded', message: agent.status.message ?? 'waiting for quota' });
      }
    }
    // Queue even on a replay: the first request may have died before it got this far.
    this.bus.enqueue(agent.id);
    return { agent, created };
  }

  async get(principal: Principal, id: string): Promise<Agent> {
    const agent = await this.store.getAgent(id);
    if (!agent || agent.tenantId !== principal.tenantId) throw agentNotFound(id);
    return agent;
  }

  async list(principal: Principal, filter: Omit<AgentFilter, 'tenantId'> & { name?: string | undefined }): Promise<AgentPage> {
    if (filter.name !== undefined) {
      const agent = await this.store.getAgentByName(principal.tenantId, filter.name);
      const matches = agent && (!filter.phase || filter.phase.includes(agent.status.phase));
      return { items: matches ? [agent] : [] };
    }
    return this.store.listAgents({ ...filter, tenantId: principal.tenantId });
  }

  /** Sets the desired state with a compare-and-set loop; returns the updated agent. */
  async setDesired(principal: Principal, id: string, desired: DesiredState): Promise<Agent> {
    for (let attempt = 0; ; attempt++) {
      const agent = await this.get(principal, id);
      if (agent.desired === 'deleted') throw new ConflictError('AGENT_DELETING', `agent "${id}" is being deleted`, { agentId: id });
      const now = this.clock.now();
      let status = agent.status;
      if (desired === 'running') {
        if (agent.desired === 'running' && !['Stopped', 'Succeeded', 'Failed'].includes(agent.status.phase)) return agent;
        // Start again from a finished or stopped state: back to Pending, keep node and container.
        status = { ...agent.status, phase: 'Pending' as Phase, reason: 'StartRequested', message: 'start requested', phaseSince: now, nextAttemptAt: undefined, exitCode: undefined, finishedAt: undefined };
      } else if (desired === 'stopped') {
        if (agent.desired === 'stopped') return agent;
      } else {
        status = { ...agent.status, phase: 'Deleting', reason: 'DeleteRequested', message: 'delete requested', phaseSince: now };
      }
      try {
        const requested: DecisionEvent = { type: 'Normal', reason: desired === 'running' ? 'StartRequested' : desired === 'stopped' ? 'StopRequested' : 'DeleteRequested', message: `${desired === 'deleted' ? 'delete' : desired === 'running' ? 'start' : 'stop'} requested by ${principal.subject}` };
        // The request's event is stored with the change (data.from/to when the phase moves,
        // as the controller's are), so no transition is left without its stored event.
        const { agent: updated, events: stored } = await this.store.updateAgentWithEvents(
          agent,
          { desired, status, updatedAt: now },
          withPhaseChange(agent.status, status, [requested]).map((e) => this.events.stamp({ tenantId: agent.tenantId, objectKind: 'Agent', objectId: id, ...e })),
        );
        this.bus.enqueue(id);
        this.events.published(stored);
        if (updated.status.phase !== agent.status.phase) {
          // Live, as the controller announces its own transitions (SSE clients, admission).
          this.bus.publish(phaseChangedEvent(agent, agent.status.phase, updated.status.phase, now));
        }
        return updated;
      } catch (err) {
        if (err instanceof VersionConflictError && attempt < 20) continue;
        throw err;
      }
    }
  }

  /**
   * Marks the agent for deletion and waits up to `waitMs` for the controller to
   * remove container and record. Returns true when it is gone.
   */
  async delete(principal: Principal, id: string, waitMs: number, signal?: AbortSignal): Promise<{ gone: boolean; agent?: Agent }> {
    const existing = await this.get(principal, id);
    const gone = new Promise<boolean>((resolve) => {
      const finish = (result: boolean): void => {
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        resolve(result);
      };
      // Shutdown or a client that hung up: stop waiting; the controller finishes the delete.
      const onAbort = (): void => finish(false);
      const timer = setTimeout(() => finish(false), waitMs);
      const unsubscribe = this.bus.subscribe((e) => {
        if (e.objectId === id && e.reason === 'Deleted') finish(true);
      });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
    const agent = existing.desired === 'deleted' ? existing : await this.setDesired(principal, id, 'deleted');
    if (existing.desired === 'deleted') this.bus.enqueue(id);
    if (await gone) return { gone: true };
    const still = await this.store.getAgent(id);
    return still ? { gone: false, agent: still } : { gone: true, agent };
  }
}
