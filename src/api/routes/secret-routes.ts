import { z } from 'zod';
import type { SecretMetadata, SecretService } from '../../security/secret-service.js';
import type { RouteRegistry } from '../route-registry.js';
import { CreateSecretRequest, SecretList, SecretName, SecretResponse } from '../schemas/secret-schema.js';

const NameParams = z.strictObject({ name: SecretName });

const toSecretResponse = (s: SecretMetadata) => ({
  name: s.name,
  tenantId: s.tenantId,
  keyId: s.keyId,
  createdAt: new Date(s.createdAt).toISOString(),
  updatedAt: new Date(s.updatedAt).toISOString(),
});

/**
 * Secrets of the caller's tenant. No endpoint returns a value: reads give metadata only.
 * Writing needs agents:write (whoever may start agents may give them credentials).
 */
export function registerSecretRoutes(routes: RouteRegistry, d: { secrets: SecretService }): void {
  routes.add(
    {
      method: 'POST',
      url: '/api/v1/secrets',
      summary: 'Create or replace a secret of the caller\'s tenant (stored encrypted; the value is never returned)',
      tags: ['secrets'],
      permission: 'agents:write',
      body: CreateSecretRequest,
      responses: { 201: SecretResponse, 200: SecretResponse },
    },
    async ({ body, principal, reply }) => {
      const { secret, created } = await d.secrets.put(principal.tenantId, body.name, body.value);
      void reply.status(created ? 201 : 200).header('location', `/api/v1/secrets/${secret.name}`);
      return toSecretResponse(secret);
    },
  );

  routes.add(
    { method: 'GET', url: '/api/v1/secrets', summary: 'List secrets (names and metadata only)', tags: ['secrets'], permission: 'agents:read', responses: { 200: SecretList } },
    async ({ principal }) => ({ items: (await d.secrets.list(principal.tenantId)).map(toSecretResponse) }),
  );

  routes.add(
    { method: 'GET', url: '/api/v1/secrets/:name', summary: 'Metadata of one secret (never its value)', tags: ['secrets'], permission: 'agents:read', params: NameParams, responses: { 200: SecretResponse } },
    async ({ params, principal }) => toSecretResponse(await d.secrets.get(principal.tenantId, params.name)),
  );

  routes.add(
    {
      method: 'DELETE',
      url: '/api/v1/secrets/:name',
      summary: 'Delete a secret (new agents cannot refer to it; a container created earlier keeps the value it was created with)',
      tags: ['secrets'],
      permission: 'agents:write',
      params: NameParams,
      responses: { 200: z.object({ name: z.string(), deleted: z.literal(true) }) },
    },
    async ({ params, principal }) => {
      await d.secrets.delete(principal.tenantId, params.name);
      return { name: params.name, deleted: true as const };
    },
  );
}
