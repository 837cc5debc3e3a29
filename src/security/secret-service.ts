import type { SecretEnvRef } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { InputError, NotFoundError } from '../domain/errors.js';
import type { Store, StoredSecret } from '../store/store.js';
import { SecretDecryptError, type SecretCipher } from './secret-cipher.js';

/** What a read of a secret shows: never the value. */
export interface SecretMetadata {
  name: string;
  tenantId: string;
  /** Id of the key that sealed it (shows rotation progress). */
  keyId: string;
  createdAt: number;
  updatedAt: number;
}

/** What one re-encryption pass did (`SecretService.reencryptAllWithReport`). */
export interface SecretReencryptReport {
  /** Secrets in the store, all tenants. */
  total: number;
  /** Re-sealed with the current key by this pass. */
  resealed: number;
  /** Already sealed with the current key: nothing to do. */
  alreadyCurrent: number;
  /** Could not be opened with any configured key; left unchanged. */
  failed: { tenantId: string; name: string; keyId: string; reason: string }[];
  /** Id of the key everything is sealed with after a pass without failures. */
  currentKeyId: string;
}

/** Secret names: like environment-friendly DNS labels, so they read well in manifests. */
export const SECRET_NAME = /^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$/;
/** Largest secret value in bytes (UTF-8). */
export const MAX_SECRET_BYTES = 65_536;

/** The associated data that binds a ciphertext to its tenant and name. */
const aad = (tenantId: string, name: string): string => `secret:${tenantId}/${name}`;

const metadata = (s: StoredSecret): SecretMetadata => ({ name: s.name, tenantId: s.tenantId, keyId: s.keyId, createdAt: s.createdAt, updatedAt: s.updatedAt });

export const secretNotFound = (tenantId: string, name: string): NotFoundError =>
  new NotFoundError('SECRET_NOT_FOUND', `secret "${name}" does not exist in tenant "${tenantId}"`, { tenantId, name });

/**
 * Tenant secrets: sealed with AES-256-GCM before they reach the store, opened only to build
 * a container's environment. No method returns a value to an API caller.
 */
export class SecretService {
  constructor(
    private readonly store: Store,
    private readonly cipher: SecretCipher,
    private readonly clock: Clock,
  ) {}

  /** Creates or replaces a secret. Throws InputError on a bad name or an oversized value. */
  async put(tenantId: string, name: string, value: string): Promise<{ secret: SecretMetadata; created: boolean }> {
    if (!SECRET_NAME.test(name)) throw new InputError(`secret name "${name}" must be 1-63 lowercase letters, digits, "-", "_" or "."`, { field: 'name' });
    if (Buffer.byteLength(value, 'utf8') > MAX_SECRET_BYTES) throw new InputError(`secret value must be at most ${MAX_SECRET_BYTES} bytes`, { field: 'value' });
    const existed = (await this.store.getSecret(tenantId, name)) !== undefined;
    const now = this.clock.now();
    const sealed = this.cipher.seal(value, aad(tenantId, name));
    const stored = await this.store.putSecret({ tenantId, name, keyId: sealed.keyId, ciphertext: sealed.ciphertext, createdAt: now, updatedAt: now });
    return { secret: metadata(stored), created: !existed };
  }

  async list(tenantId: string): Promise<SecretMetadata[]> {
    return (await this.store.listSecrets(tenantId)).map(metadata);
  }

  async get(tenantId: string, name: string): Promise<SecretMetadata> {
    const stored = await this.store.getSecret(tenantId, name);
    if (!stored) throw secretNotFound(tenantId, name);
    return metadata(stored);
  }

  /** Throws NotFoundError(SECRET_NOT_FOUND) when absent. */
  async delete(tenantId: string, name: string): Promise<void> {
    if (!(await this.store.deleteSecret(tenantId, name))) throw secretNotFound(tenantId, name);
  }

  /** Throws NotFoundError(SECRET_NOT_FOUND) naming the first missing reference. */
  async assertExist(tenantId: string, refs: Record<string, SecretEnvRef> | undefined): Promise<void> {
    for (const [env, ref] of Object.entries(refs ?? {})) {
      if ((await this.store.getSecret(tenantId, ref.name)) === undefined) {
        throw new NotFoundError('SECRET_NOT_FOUND', `env ${env}: secret "${ref.name}" does not exist in tenant "${tenantId}"; create it with POST /api/v1/secrets`, { tenantId, name: ref.name, env });
      }
    }
  }

  /**
   * Opens the referenced secrets for a container's environment. Only the controller calls
   * this, right before creating the container; the result must not be logged or stored.
   */
  async resolveEnv(tenantId: string, refs: Record<string, SecretEnvRef> | undefined): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const [name, ref] of Object.entries(refs ?? {})) {
      const stored = await this.store.getSecret(tenantId, ref.name);
      if (!stored) throw secretNotFound(tenantId, ref.name);
      env[name] = this.cipher.open(stored, aad(tenantId, ref.name));
    }
    return env;
  }

  /**
   * Re-seals every secret not sealed with the current key (step 2 of a rotation) and says
   * what it did. A secret that cannot be opened (its key is not configured, or the value was
   * tampered with) is reported in `failed` and left as it is; the others are still re-sealed,
   * so a run after fixing the keys finishes the job. Safe to run twice or concurrently with
   * writes: a value written meanwhile is already sealed with the current key. Checks `signal`
   * between secrets (an abort throws its reason; what was re-sealed stays re-sealed).
   */
  async reencryptAllWithReport(signal?: AbortSignal): Promise<SecretReencryptReport> {
    const report: SecretReencryptReport = { total: 0, resealed: 0, alreadyCurrent: 0, failed: [], currentKeyId: this.cipher.currentKeyId };
    for (const stored of await this.store.listSecrets()) {
      signal?.throwIfAborted();
      report.total++;
      if (stored.keyId === this.cipher.currentKeyId) {
        report.alreadyCurrent++;
        continue;
      }
      let value: string;
      try {
        value = this.cipher.open(stored, aad(stored.tenantId, stored.name));
      } catch (err) {
        if (!(err instanceof SecretDecryptError)) throw err;
        report.failed.push({ tenantId: stored.tenantId, name: stored.name, keyId: stored.keyId, reason: err.message });
        continue;
      }
      const sealed = this.cipher.seal(value, aad(stored.tenantId, stored.name));
      await this.store.putSecret({ ...stored, keyId: sealed.keyId, ciphertext: sealed.ciphertext, updatedAt: this.clock.now() });
      report.resealed++;
    }
    return report;
  }

  /**
   * Re-seals every secret not sealed with the current key; returns how many were re-sealed.
   * Throws SecretDecryptError for the first secret that cannot be opened (after re-sealing
   * the others); `reencryptAllWithReport` lists them all instead.
   */
  async reencryptAll(signal?: AbortSignal): Promise<number> {
    const report = await this.reencryptAllWithReport(signal);
    const first = report.failed[0];
    if (first !== undefined) throw new SecretDecryptError(`secret ${first.tenantId}/${first.name}: ${first.reason}`, first.keyId);
    return report.resealed;
  }
}
