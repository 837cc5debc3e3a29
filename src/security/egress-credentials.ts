import { createHmac, timingSafeEqual } from 'node:crypto';
import { InputError } from '../domain/errors.js';
import type { SecretCipher } from './secret-cipher.js';

/** HKDF label of the key that signs egress proxy tokens; distinct from every other use of the secret key. */
export const EGRESS_CREDENTIAL_LABEL = 'agent-platform/egress-proxy-credentials/v1';

/** Bytes of a token before base64url: all of HMAC-SHA256. */
const TOKEN_BYTES = 32;

/** Who a token is for: the agent and its tenant (a token never carries over to another tenant's agent of the same id). */
export interface EgressIdentity {
  readonly id: string;
  readonly tenantId: string;
}

/**
 * Per-agent credentials for the egress proxy's cluster listener: the agent id as user name
 * and a token derived from it, so nothing new is stored and every replica verifies the same
 * token. token = base64url(HMAC-SHA256(k, JSON [tenantId, agentId])), with k derived from the
 * platform's secret key (AGENT_PLATFORM_SECRET_KEY) under EGRESS_CREDENTIAL_LABEL.
 *
 * Rotation: tokens are issued with the current key and verified with every key of the ring,
 * so a Pod started before a rotation keeps working while the old key is still listed in
 * AGENT_PLATFORM_SECRET_KEYS_OLD; dropping the old key revokes those tokens (restart such
 * agents first). Revoking one agent's token is not possible on its own: it stops working
 * when the agent stops running (the proxy checks that per connection), not before.
 */
export class EgressCredentials {
  private readonly keys: readonly Buffer[];

  /** @param keys signing keys, current first (at least one). */
  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0) throw new InputError('egress credentials need at least one key', undefined, 'INVALID_SECRET_KEY');
    this.keys = keys.map((k) => Buffer.from(k));
  }

  /** From the platform's secret key ring (the same keys that seal tenant secrets). */
  static fromCipher(cipher: SecretCipher): EgressCredentials {
    return new EgressCredentials(cipher.deriveKeys(EGRESS_CREDENTIAL_LABEL));
  }

  /** The agent's token (URL-safe, 43 characters): the password of its proxy URL. */
  tokenFor(agent: EgressIdentity): string {
    return this.sign(this.keys[0]!, agent).toString('base64url');
  }

  /**
   * Whether `token` is this agent's token under any key of the ring. Compared in constant
   * time, and every key is tried, so the time says nothing about which key or byte failed.
   */
  verify(agent: EgressIdentity, token: string): boolean {
    const given = Buffer.from(token, 'utf8');
    let ok = false;
    for (const key of this.keys) {
      const expected = Buffer.from(this.sign(key, agent).toString('base64url'), 'utf8');
      // The length is public (every token has 43 characters); only the bytes need constant time.
      const same = given.length === expected.length && timingSafeEqual(given, expected);
      ok = same || ok;
    }
    return ok;
  }

  /**
   * `proxyUrl` with the agent's credentials as userinfo: `http://<agentId>:<token>@host:port`.
   * Agent ids and tokens are URL-safe, so nothing needs escaping.
   */
  proxyUrlFor(proxyUrl: string, agent: EgressIdentity): string {
    const url = new URL(proxyUrl);
    url.username = agent.id;
    url.password = this.tokenFor(agent);
    // URL keeps a trailing "/" after the authority; proxy variables are conventionally bare.
    return url.toString().replace(/\/$/, '');
  }

  private sign(key: Buffer, agent: EgressIdentity): Buffer {
    // JSON: unambiguous whatever the ids hold.
    const mac = createHmac('sha256', key).update(JSON.stringify([agent.tenantId, agent.id]), 'utf8').digest();
    return mac.subarray(0, TOKEN_BYTES);
  }
}
