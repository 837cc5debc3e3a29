import { z } from 'zod';
import { ISOLATION_CLASSES } from '../../domain/agent.js';
import { MAX_SECRET_BYTES, SECRET_NAME } from '../../security/secret-service.js';

const Time = z.string().meta({ description: 'RFC 3339 time' });

export const SecretName = z.string().regex(SECRET_NAME, 'must be 1-63 lowercase letters, digits, "-", "_" or ".", starting and ending with a letter or digit');

/** Body of POST /api/v1/secrets. */
export const CreateSecretRequest = z
  .strictObject({
    name: SecretName,
    value: z.string().max(MAX_SECRET_BYTES).meta({ description: 'Stored encrypted (AES-256-GCM); never returned by any endpoint' }),
  })
  .meta({ id: 'CreateSecretRequest' });

export const SecretResponse = z
  .object({
    name: z.string(),
    tenantId: z.string(),
    keyId: z.string().meta({ description: 'Id of the encryption key that sealed the value (rotation)' }),
    createdAt: Time,
    updatedAt: Time,
  })
  .meta({ id: 'Secret', description: 'Secret metadata; the value is never returned' });

export const SecretList = z.object({ items: z.array(SecretResponse) }).meta({ id: 'SecretList' });

/** An env value taken from a secret: `{"secretRef": "openai"}` or `{"secretRef": {"name": "openai"}}`. */
export const SecretRefInput = z
  .strictObject({ secretRef: z.union([SecretName, z.strictObject({ name: SecretName })]) })
  .transform((v) => ({ secretRef: typeof v.secretRef === 'string' ? v.secretRef : v.secretRef.name }))
  .meta({ id: 'SecretRef' });

/** A plain env value or a secret reference. */
export const EnvValueInput = z.union([z.string().max(131072), SecretRefInput]);

/** How an env value is shown: plain text, or the reference (never the secret's value). */
export const EnvValueResponse = z.union([z.string(), z.object({ secretRef: z.string() })]);

export const IsolationInput = z.enum(ISOLATION_CLASSES).meta({ description: 'runc (default; shares the host kernel) or gvisor (user-space kernel; choose for untrusted code). A configured minimum may raise it.' });

/** Egress policy. */
export const NetworkPolicyInput = z
  .discriminatedUnion('mode', [
    z.strictObject({ mode: z.literal('none') }),
    z.strictObject({
      mode: z.literal('allowlist'),
      allow: z
        .array(z.string().min(1).max(300))
        .min(1)
        .max(1000)
        .meta({ description: 'Rules: "api.openai.com:443", "*.pypi.org" (ports 80 and 443), "10.20.0.0/16:5432", "host:8000-8100", "host:*"' }),
    }),
    z.strictObject({ mode: z.literal('open') }),
  ])
  .meta({ id: 'NetworkPolicy', description: 'none (default): loopback only; allowlist: only the listed destinations, through the audited egress proxy; open: anything (platform admins only)' });

export const ExposeInput = z
  .array(z.strictObject({ port: z.number().int().min(1).max(65535) }))
  .max(16)
  .refine((ports) => new Set(ports.map((p) => p.port)).size === ports.length, 'ports must be distinct')
  .meta({ description: 'Container ports published on the node at 127.0.0.1 (random host port, see status.endpoints); never on other interfaces' });

export const AgentEndpointResponse = z.object({ port: z.number(), hostIp: z.string(), hostPort: z.number() }).meta({ id: 'AgentEndpoint' });

/** Body of PATCH /api/v1/agents/{id} (JSON merge patch; today the network policy). */
export const PatchAgentRequest = z
  .strictObject({
    network: z
      .strictObject({
        mode: z.enum(['none', 'allowlist', 'open']).optional(),
        allow: z.array(z.string().min(1).max(300)).max(1000).nullable().optional(),
      })
      .nullable()
      .optional()
      .meta({ description: 'Merged into the agent\'s network policy; `allow` replaces the list. A new allowlist applies to new connections of the running agent; a mode change needs a stop first.' }),
  })
  .meta({ id: 'PatchAgentRequest' });
export type PatchAgentRequest = z.output<typeof PatchAgentRequest>;

export const EgressRecordResponse = z
  .object({
    id: z.number(),
    time: Time,
    sourceIp: z.string(),
    method: z.enum(['CONNECT', 'HTTP']),
    host: z.string(),
    port: z.number().nullable(),
    resolvedIp: z.string().optional(),
    sni: z.string().optional(),
    rule: z.string().optional(),
    decision: z.enum(['allow', 'deny']),
    reason: z.string(),
    detail: z.string().optional(),
    httpStatus: z.number().optional(),
    bytesUp: z.number(),
    bytesDown: z.number(),
    durationMs: z.number(),
  })
  .meta({ id: 'EgressRecord' });
export const EgressRecordList = z.object({ items: z.array(EgressRecordResponse), nextAfterId: z.number().optional() }).meta({ id: 'EgressRecordList' });
