import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import { systemClock } from '../domain/clock.js';
import { InputError } from '../domain/errors.js';
import { openStore } from '../store/open-store.js';
import { GENERATED_KEY_FILE, loadSecretCipher } from './secret-keyring.js';
import { SecretService, type SecretReencryptReport } from './secret-service.js';

/**
 * `agent-platform secrets rotate-key`: step 2 of a key rotation (docs/security.md). Opens the
 * store the configuration names, loads the key ring exactly as `serve` does (the new key
 * current, AGENT_PLATFORM_SECRET_KEYS_OLD decrypt-only) and re-seals every secret that is not
 * sealed with the current key. Runs beside a serving platform: a secret written meanwhile is
 * sealed with the current key already, and a re-seal is one row write.
 *
 * Throws InputError(SECRET_KEY_MISSING) when no key is configured and no generated key file
 * exists: generating a fresh key here (as `serve` would) could open nothing.
 */
export async function rotateSecretKey(config: Readonly<Config>, signal?: AbortSignal): Promise<SecretReencryptReport> {
  const noKeyConfigured = (config.secretKey ?? '') === '' && config.secretKeyFile === undefined;
  if (noKeyConfigured && !existsSync(join(config.dataDir, GENERATED_KEY_FILE))) {
    throw new InputError(
      `no secret key is configured and ${join(config.dataDir, GENERATED_KEY_FILE)} does not exist: set AGENT_PLATFORM_SECRET_KEY (or AGENT_PLATFORM_SECRET_KEY_FILE) to the new key and AGENT_PLATFORM_SECRET_KEYS_OLD to the old one(s)`,
      { dataDir: config.dataDir },
      'SECRET_KEY_MISSING',
    );
  }
  // Keys first: a bad key is a configuration mistake, reported before the store is touched.
  const cipher = loadSecretCipher({ key: config.secretKey, keyFile: config.secretKeyFile, oldKeys: config.secretKeysOld, dataDir: config.dataDir });
  const store = await openStore(config.databaseUrl, config.dataDir, { sqliteCacheMiB: config.sqliteCacheMiB });
  try {
    return await new SecretService(store, cipher, systemClock).reencryptAllWithReport(signal);
  } finally {
    await store.close();
  }
}
