import type { IsolationClass } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { ConflictError, NotFoundError } from '../domain/errors.js';
import type { AgentService, Principal } from '../services/agent-service.js';
import type { AdmissionMode, QuotaLimits, Store, Tenant, TenantPatch } from '../store/store.js';
import { quotaView, type QuotaLine } from './quota.js';

/** The tenant the bootstrap admin token belongs to; created by the migration, never deleted. */
export const DEFAULT_TENANT_ID = 'default';

export interface TenantQuotaView {
  tenantId: string;
  admission: AdmissionMode;
  resources: Record<'cpuMillicores' | 'memoryMiB' | 'gpu' | 'agents' | 'running', QuotaLine>;
  perAgent: { cpuMillicores: number | null; memoryMiB: number | null; gpu: number | null };
  /** Agents waiting Pending for quota (admission "queue"). */
  queued: number;
}

export const tenantNotFound = (id: string): NotFoundError => new NotFoundError('TENANT_NOT_FOUND', `tenant "${id}" does not exist`, { tenantId: id });

/**
 * Use cases on tenants. A principal sees only its own tenant (another is "not found",
 * never "forbidden", so ids do not leak); a platform admin sees all.
 */
export class TenantService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly agents: AgentService,
    /**
     * Told after a tenant's quota changed (Kubernetes nodes mirror it into the tenant's
     * namespace). Its failure is its own to report: the store holds the quota either way.
     * @default nothing to tell
     */
    private readonly quotaChanged: (tenantId: string) => Promise<void> = async () => {},
  ) {}

  /** The tenant if `principal` may see it, else TENANT_NOT_FOUND. */
  async visible(principal: Principal, id: string): Promise<Tenant> {
    if (principal.role !== 'platform-admin' && principal.tenantId !== id) throw tenantNotFound(id);
    const tenant = await this.store.getTenant(id);
    if (!tenant) throw tenantNotFound(id);
    return tenant;
  }

  async list(principal: Principal): Promise<Tenant[]> {
    if (principal.role === 'platform-admin') return this.store.listTenants();
    const own = await this.store.getTenant(principal.tenantId);
    return own ? [own] : [];
  }

  create(input: { id: string; name?: string | undefined; admission?: AdmissionMode | undefined; quota?: QuotaLimits | undefined; minIsolation?: IsolationClass | undefined }): Promise<Tenant> {
    return this.store.createTenant({
      id: input.id,
      name: input.name ?? input.id,
      admission: input.admission ?? 'reject',
      quota: input.quota ?? {},
      ...(input.minIsolation !== undefined ? { minIsolation: input.minIsolation } : {}),
      createdAt: this.clock.now(),
    });
  }

  async update(principal: Principal, id: string, patch: Omit<TenantPatch, 'updatedAt'>): Promise<Tenant> {
    await this.visible(principal, id);
    const updated = await this.store.updateTenant(id, { ...patch, updatedAt: this.clock.now() });
    if (patch.quota !== undefined) await this.quotaChanged(id);
    return updated;
  }

  /**
   * Deletes a tenant with no agents. With `cascade`, first revokes its keys (so it is
   * locked out at once) and deletes its agents, waiting up to `waitMs` for them to go;
   * returns the agents still being deleted (0 when the tenant is gone).
   */
  async delete(principal: Principal, id: string, cascade: boolean, waitMs: number): Promise<{ deleted: boolean; agentsRemaining: number }> {
    await this.visible(principal, id);
    if (id === DEFAULT_TENANT_ID) throw new ConflictError('TENANT_PROTECTED', `tenant "${id}" holds the bootstrap admin and cannot be deleted`, { tenantId: id });
    if (cascade) {
      const now = this.clock.now();
      for (const key of await this.store.listApiKeys(id)) if (key.revokedAt === undefined) await this.store.revokeApiKey(id, key.id, now);
      const acting: Principal = { subject: principal.subject, tenantId: id, role: 'platform-admin' };
      const deadline = Date.now() + waitMs;
      for (;;) {
        const page = await this.store.listAgents({ tenantId: id, limit: 1000 });
        if (page.items.length === 0) break;
        for (const a of page.items) if (a.desired !== 'deleted') await this.agents.setDesired(acting, a.id, 'deleted');
        if (Date.now() >= deadline) return { deleted: false, agentsRemaining: page.items.length };
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await this.store.deleteTenant(id);
    return { deleted: true, agentsRemaining: 0 };
  }

  async quota(principal: Principal, id: string): Promise<TenantQuotaView> {
    await this.visible(principal, id);
    const state = await this.store.getTenantQuota(id);
    const queued = state.admission === 'queue' ? (await this.store.listQueuedAgents(id)).length : 0;
    return {
      tenantId: id,
      admission: state.admission,
      resources: quotaView(state.limits, state.used),
      perAgent: { cpuMillicores: state.limits.maxAgentCpuMillicores ?? null, memoryMiB: state.limits.maxAgentMemoryMiB ?? null, gpu: state.limits.maxAgentGpu ?? null },
      queued,
    };
  }
}
