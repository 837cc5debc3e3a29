import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../domain/clock.js';
import { ForbiddenError, InputError, NotFoundError, UnauthenticatedError } from '../domain/errors.js';
import type { Principal } from '../services/agent-service.js';
import type { ApiKeyRecord, Role, Store } from '../store/store.js';
import { sha256 } from '../api/auth.js';
import { mayGrant } from './roles.js';
import type { CredentialState } from './stream-key-watch.js';

/** `ap_<key id: 16 base32>_<secret: 64 hex>`; the id finds the record, the secret proves it. */
const KEY_FORMAT = /^ap_([a-z2-7]{16})_([0-9a-f]{64})$/;

export interface NewApiKeyInput {
  name: string;
  role: Role;
  /** ms epoch; absent: never expires. */
  expiresAt?: number | undefined;
}

function newKeyId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = '';
  for (const b of randomBytes(16)) out += alphabet[b & 31];
  return out;
}

/**
 * API keys of tenants. The secret is returned once at creation and stored as its sha256
 * (a 256-bit random secret needs no slow hash: there is nothing to brute-force).
 * Keys are resolved from the store on every request, without a cache, so a revoked or
 * expired key is refused at once on every replica (one primary-key lookup per request).
 */
export class ApiKeyService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async create(principal: Principal, tenantId: string, input: NewApiKeyInput): Promise<{ record: ApiKeyRecord; key: string }> {
    if (!mayGrant(principal.role, input.role)) {
      throw new ForbiddenError(`role ${principal.role} may not create a key with role ${input.role}`, { role: principal.role, requested: input.role });
    }
    if (input.role === 'platform-admin' && tenantId !== principal.tenantId && principal.role !== 'platform-admin') {
      throw new ForbiddenError('only platform admins create platform-admin keys');
    }
    const now = this.clock.now();
    if (input.expiresAt !== undefined && input.expiresAt <= now) throw new InputError('expiresAt must be in the future', { field: 'expiresAt' }, 'EXPIRES_AT_IN_PAST');
    const id = newKeyId();
    const secret = randomBytes(32).toString('hex');
    const record: ApiKeyRecord = {
      id,
      tenantId,
      name: input.name,
      role: input.role,
      secretSha256: sha256(secret),
      createdAt: now,
      createdBy: principal.subject,
      ...(input.expiresAt !== undefined ? { expiresAt: input.expiresAt } : {}),
    };
    await this.store.createApiKey(record);
    return { record, key: `ap_${id}_${secret}` };
  }

  list(tenantId: string): Promise<ApiKeyRecord[]> {
    return this.store.listApiKeys(tenantId);
  }

  async revoke(tenantId: string, keyId: string): Promise<void> {
    const revoked = await this.store.revokeApiKey(tenantId, keyId, this.clock.now());
    if (!revoked) {
      const existing = await this.store.getApiKey(keyId);
      if (!existing || existing.tenantId !== tenantId) throw new NotFoundError('API_KEY_NOT_FOUND', `API key "${keyId}" does not exist`, { keyId });
      // Revoked already: revoking is idempotent.
    }
  }

  /**
   * Resolver for the Authenticator: a principal for a valid key; undefined for a token
   * that is not an API key; UnauthenticatedError for a revoked, expired or wrong one.
   */
  readonly resolve = async (token: string): Promise<Principal | undefined> => {
    const m = KEY_FORMAT.exec(token);
    if (!m) return undefined;
    const key = await this.store.getApiKey(m[1]!);
    const given = Buffer.from(sha256(m[2]!), 'hex');
    if (!key || !timingSafeEqual(given, Buffer.from(key.secretSha256, 'hex'))) throw new UnauthenticatedError('invalid API key');
    if (key.revokedAt !== undefined) throw new UnauthenticatedError(`API key ${key.id} was revoked`, 'API_KEY_REVOKED');
    if (key.expiresAt !== undefined && key.expiresAt <= this.clock.now()) throw new UnauthenticatedError(`API key ${key.id} has expired`, 'API_KEY_EXPIRED');
    return { subject: `key:${key.id}`, tenantId: key.tenantId, role: key.role };
  };

  /**
   * Whether an authenticated principal's key still holds (for streams opened earlier):
   * invalid with the error a new request would get when the key was revoked, has expired
   * or is gone (its tenant was deleted). Principals that are not API keys (the bootstrap
   * admin) are always valid here.
   */
  readonly check = async (principal: Principal): Promise<CredentialState> => {
    if (!principal.subject.startsWith('key:')) return { valid: true };
    const id = principal.subject.slice('key:'.length);
    const key = await this.store.getApiKey(id);
    if (!key) return { valid: false, error: new UnauthenticatedError(`API key ${id} no longer exists`, 'API_KEY_REVOKED') };
    if (key.revokedAt !== undefined) return { valid: false, error: new UnauthenticatedError(`API key ${key.id} was revoked`, 'API_KEY_REVOKED') };
    if (key.expiresAt !== undefined && key.expiresAt <= this.clock.now()) return { valid: false, error: new UnauthenticatedError(`API key ${key.id} has expired`, 'API_KEY_EXPIRED') };
    return { valid: true, expiresAtMs: key.expiresAt };
  };
}
