import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { silentLogger, type Logger } from '../domain/logger.js';
import { InputError } from '../domain/errors.js';
import { SECRET_KEY_BYTES, SecretCipher, secretKeyId } from './secret-cipher.js';

/** Where the secret keys come from; see docs/security.md ("Secrets: keys and rotation"). */
export interface SecretKeySource {
  /** base64 of 32 bytes (AGENT_PLATFORM_SECRET_KEY). */
  key?: string | undefined;
  /** File holding the base64 key (AGENT_PLATFORM_SECRET_KEY_FILE). */
  keyFile?: string | undefined;
  /** Comma-separated base64 keys that only decrypt (AGENT_PLATFORM_SECRET_KEYS_OLD). */
  oldKeys?: string | undefined;
  /** Where a key file is generated when neither key nor keyFile is set. */
  dataDir: string;
  logger?: Logger | undefined;
}

/** Name of the generated key file inside the data directory. */
export const GENERATED_KEY_FILE = 'secret-key';

function decodeKey(text: string, what: string): Buffer {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || key.length !== SECRET_KEY_BYTES) {
    throw new InputError(`${what} must be the base64 encoding of ${SECRET_KEY_BYTES} random bytes (e.g. \`openssl rand -base64 32\`)`, { field: what }, 'INVALID_SECRET_KEY');
  }
  return key;
}

/**
 * Builds the SecretCipher from the configured keys. With neither `key` nor `keyFile`, a key
 * is generated once into `<dataDir>/secret-key` (mode 0600) and reused on later starts: fine
 * for one machine, but back that file up with the database, or the secrets are lost.
 */
export function loadSecretCipher(source: SecretKeySource): SecretCipher {
  const logger = source.logger ?? silentLogger;
  let current: Buffer;
  if (source.key !== undefined && source.key !== '') {
    current = decodeKey(source.key, 'AGENT_PLATFORM_SECRET_KEY');
  } else {
    const file = source.keyFile ?? join(source.dataDir, GENERATED_KEY_FILE);
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || source.keyFile !== undefined) throw err;
    }
    if (text === undefined) {
      mkdirSync(dirname(file), { recursive: true });
      // 'wx': never overwrite a key another process wrote a moment ago.
      try {
        writeFileSync(file, `${randomBytes(SECRET_KEY_BYTES).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
        logger.warn({ file }, 'generated a secret encryption key; back it up with the database, or set AGENT_PLATFORM_SECRET_KEY / AGENT_PLATFORM_SECRET_KEY_FILE');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      text = readFileSync(file, 'utf8');
    }
    if ((statSync(file).mode & 0o077) !== 0) {
      // A key readable by other users is a leaked key; tighten it rather than refuse to start.
      chmodSync(file, 0o600);
      logger.warn({ file }, 'secret key file was readable by other users; changed its mode to 0600');
    }
    current = decodeKey(text, source.keyFile !== undefined ? 'AGENT_PLATFORM_SECRET_KEY_FILE' : file);
  }
  const old = (source.oldKeys ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s, i) => decodeKey(s, `AGENT_PLATFORM_SECRET_KEYS_OLD[${i}]`));
  const cipher = new SecretCipher(current, old);
  logger.info({ keyId: secretKeyId(current), decryptOnlyKeys: old.map(secretKeyId) }, 'secret encryption keys loaded');
  return cipher;
}
