import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { InputError } from '../domain/errors.js';

/** Length of an AES-256 key in bytes. */
export const SECRET_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A sealed value and the id of the key that sealed it (stored together). */
export interface SealedSecret {
  keyId: string;
  /** base64 of iv (12 bytes) | GCM tag (16 bytes) | ciphertext. */
  ciphertext: string;
}

/** Thrown when a stored value cannot be opened: unknown key id, or tampered/moved ciphertext. */
export class SecretDecryptError extends Error {
  constructor(
    message: string,
    readonly keyId: string,
  ) {
    super(message);
    this.name = 'SecretDecryptError';
  }
}

/** Stable id of a key: the first 16 hex digits of its SHA-256 (safe to store and log). */
export const secretKeyId = (key: Buffer): string => createHash('sha256').update(key).digest('hex').slice(0, 16);

/**
 * AES-256-GCM with a key ring: seals with the current key, opens with any key of the ring
 * (the current one and old, decrypt-only ones) chosen by the stored key id. This is what
 * makes rotation possible: start with the new key current and the old one in the ring,
 * re-seal every value (SecretService.reencryptAll), then drop the old key.
 *
 * The associated data (e.g. "tenant/name") is authenticated but not stored: a ciphertext
 * copied to another tenant's or name's row fails to open.
 */
export class SecretCipher {
  readonly currentKeyId: string;
  private readonly keys = new Map<string, Buffer>();

  /** @param current the sealing key (32 bytes); @param old decrypt-only keys. */
  constructor(current: Buffer, old: readonly Buffer[] = []) {
    for (const key of [current, ...old]) {
      if (key.length !== SECRET_KEY_BYTES) throw new InputError(`secret key must be ${SECRET_KEY_BYTES} bytes, got ${key.length}`, undefined, 'INVALID_SECRET_KEY');
      this.keys.set(secretKeyId(key), Buffer.from(key));
    }
    this.currentKeyId = secretKeyId(current);
  }

  /** Key ids this cipher can open. */
  keyIds(): string[] {
    return [...this.keys.keys()];
  }

  /**
   * Keys for another purpose, derived from every key of the ring with HKDF-SHA256 under
   * `label` (current key's first): a distinct label per purpose keeps a derived key from
   * ever being usable as a sealing key, and the ring's old keys let values derived before a
   * rotation still verify (see src/security/egress-credentials.ts).
   */
  deriveKeys(label: string): Buffer[] {
    const ids = [this.currentKeyId, ...[...this.keys.keys()].filter((id) => id !== this.currentKeyId)];
    return ids.map((id) => Buffer.from(hkdfSync('sha256', this.keys.get(id)!, Buffer.alloc(0), Buffer.from(label, 'utf8'), SECRET_KEY_BYTES)));
  }

  seal(plaintext: string, associatedData: string): SealedSecret {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.currentKeyId)!, iv);
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { keyId: this.currentKeyId, ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64') };
  }

  open(sealed: SealedSecret, associatedData: string): string {
    const key = this.keys.get(sealed.keyId);
    if (key === undefined) {
      throw new SecretDecryptError(`no key with id ${sealed.keyId} is configured (add it to AGENT_PLATFORM_SECRET_KEYS_OLD)`, sealed.keyId);
    }
    const raw = Buffer.from(sealed.ciphertext, 'base64');
    if (raw.length < IV_BYTES + TAG_BYTES) throw new SecretDecryptError('ciphertext is truncated', sealed.keyId);
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretDecryptError('ciphertext failed authentication (tampered, or sealed for another secret)', sealed.keyId);
    }
  }
}
