import { z } from 'zod';
import { ISOLATION_CLASSES } from '../../domain/agent.js';
import { CpuQuantity, DNS1123_LABEL, MemoryQuantity } from './agent-schema.js';

export const TenantId = z.string().max(63).regex(DNS1123_LABEL, 'must be a DNS-1123 label: lower-case letters, digits and "-"');
export const RoleName = z.enum(['platform-admin', 'tenant-admin', 'member', 'viewer']);
export const AdmissionName = z.enum(['reject', 'queue']).meta({ description: 'reject: over-quota creates get 403 QUOTA_EXCEEDED; queue: they wait Pending (reason QuotaExceeded) and are admitted by priority, then age' });

const Count = z.number().int().min(0).max(1_000_000_000);

/** A tenant's isolation floor: its agents asking for a weaker class are raised to it. */
export const TenantMinIsolation = z
  .enum(ISOLATION_CLASSES)
  .meta({ description: "Weakest isolation class this tenant's agents run in: a weaker request is raised to it (never refused); the platform's minimum still applies" });

/** Quota limits as the API takes them (quantities parsed to base units); null removes a limit. */
export const QuotaInput = z
  .strictObject({
    cpu: CpuQuantity.nullable().optional().meta({ description: 'Total CPU requests of live agents, e.g. "8" or "8000m"' }),
    memory: MemoryQuantity.nullable().optional().meta({ description: 'Total memory requests of live agents, e.g. "16Gi"' }),
    gpu: Count.nullable().optional(),
    agents: Count.nullable().optional().meta({ description: 'Agent records, whatever their phase' }),
    running: Count.nullable().optional().meta({ description: 'Live agents (admitted, not Succeeded, Failed or Stopped)' }),
    perAgent: z
      .strictObject({ cpu: CpuQuantity.nullable().optional(), memory: MemoryQuantity.nullable().optional(), gpu: Count.nullable().optional() })
      .optional()
      .meta({ description: 'Largest request of one agent' }),
  })
  .meta({ id: 'QuotaInput' });
export type QuotaInput = z.output<typeof QuotaInput>;

export const CreateTenantRequest = z
  .strictObject({
    id: TenantId,
    name: z.string().min(1).max(200).optional(),
    admission: AdmissionName.optional(),
    quota: QuotaInput.optional(),
    minIsolation: TenantMinIsolation.optional(),
  })
  .meta({ id: 'CreateTenantRequest' });

export const PatchTenantRequest = z
  .strictObject({
    name: z.string().min(1).max(200).optional(),
    admission: AdmissionName.optional(),
    quota: QuotaInput.optional(),
    minIsolation: TenantMinIsolation.nullable().optional().meta({ description: 'null removes the tenant minimum' }),
  })
  .meta({ id: 'PatchTenantRequest' });

const Limits = z.object({
  cpuMillicores: z.number().nullable(),
  memoryMiB: z.number().nullable(),
  gpu: z.number().nullable(),
  agents: z.number().nullable(),
  running: z.number().nullable(),
  maxAgentCpuMillicores: z.number().nullable(),
  maxAgentMemoryMiB: z.number().nullable(),
  maxAgentGpu: z.number().nullable(),
});

export const TenantResponse = z
  .object({
    id: z.string(),
    name: z.string(),
    admission: AdmissionName,
    quota: Limits.meta({ description: 'null: unlimited' }),
    minIsolation: TenantMinIsolation.nullable().meta({ description: 'null: no tenant minimum (the platform minimum still applies)' }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Tenant' });
export const TenantList = z.object({ items: z.array(TenantResponse) }).meta({ id: 'TenantList' });

const QuotaLine = z.object({ limit: z.number().nullable(), used: z.number(), free: z.number().nullable() });
export const QuotaResponse = z
  .object({
    tenantId: z.string(),
    admission: AdmissionName,
    resources: z.object({ cpuMillicores: QuotaLine, memoryMiB: QuotaLine, gpu: QuotaLine, agents: QuotaLine, running: QuotaLine }),
    perAgent: z.object({ cpuMillicores: z.number().nullable(), memoryMiB: z.number().nullable(), gpu: z.number().nullable() }),
    queued: z.number().meta({ description: 'Agents waiting for quota' }),
  })
  .meta({ id: 'TenantQuota' });

export const CreateKeyRequest = z
  .strictObject({
    name: z.string().min(1).max(100),
    role: RoleName.default('member'),
    expiresAt: z.iso.datetime({ offset: true }).optional().meta({ description: 'RFC 3339; absent: never expires' }),
  })
  .meta({ id: 'CreateApiKeyRequest' });

export const ApiKeyResponse = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    name: z.string(),
    role: RoleName,
    createdAt: z.string(),
    createdBy: z.string(),
    expiresAt: z.string().optional(),
    revokedAt: z.string().optional(),
    status: z.enum(['active', 'expired', 'revoked']),
  })
  .meta({ id: 'ApiKey' });
export const CreatedApiKeyResponse = ApiKeyResponse.extend({ key: z.string().meta({ description: 'The secret; shown only in this response' }) }).meta({ id: 'CreatedApiKey' });
export const ApiKeyList = z.object({ items: z.array(ApiKeyResponse) }).meta({ id: 'ApiKeyList' });

export const WhoAmI = z.object({ subject: z.string(), tenantId: z.string(), role: RoleName }).meta({ id: 'WhoAmI' });
