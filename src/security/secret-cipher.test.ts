import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SecretCipher, SecretDecryptError, secretKeyId } from './secret-cipher.js';
import { GENERATED_KEY_FILE, loadSecretCipher } from './secret-keyring.js';

describe('SecretCipher (AES-256-GCM)', () => {
  const key = randomBytes(32);
  it('round-trips, with a fresh IV each time, and never contains the plaintext', () => {
    const c = new SecretCipher(key);
    const a = c.seal('sk-live-123', 'secret:t/openai');
    const b = c.seal('sk-live-123', 'secret:t/openai');
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(Buffer.from(a.ciphertext, 'base64').includes(Buffer.from('sk-live-123'))).toBe(false);
    expect(a.keyId).toBe(secretKeyId(key));
    expect(c.open(a, 'secret:t/openai')).toBe('sk-live-123');
  });
  it('refuses a ciphertext moved to another tenant or name, or tampered with', () => {
    const c = new SecretCipher(key);
    const sealed = c.seal('v', 'secret:t/a');
    expect(() => c.open(sealed, 'secret:other/a')).toThrow(SecretDecryptError);
    const raw = Buffer.from(sealed.ciphertext, 'base64');
    raw[raw.length - 1]! ^= 1;
    expect(() => c.open({ ...sealed, ciphertext: raw.toString('base64') }, 'secret:t/a')).toThrow(SecretDecryptError);
  });
  it('rotates: an old key opens old values, new values use the new key', () => {
    const oldKey = randomBytes(32);
    const sealedOld = new SecretCipher(oldKey).seal('v1', 'x');
    const rotated = new SecretCipher(key, [oldKey]);
    expect(rotated.open(sealedOld, 'x')).toBe('v1');
    expect(rotated.seal('v2', 'x').keyId).toBe(secretKeyId(key));
    expect(() => new SecretCipher(key).open(sealedOld, 'x')).toThrow(/AGENT_PLATFORM_SECRET_KEYS_OLD/);
  });
});

describe('loadSecretCipher', () => {
  it('generates a 0600 key file once and reuses it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyring-'));
    const first = loadSecretCipher({ dataDir: dir });
    const file = join(dir, GENERATED_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadSecretCipher({ dataDir: dir }).currentKeyId).toBe(first.currentKeyId);
    expect(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')).toHaveLength(32);
  });
  it('takes the env key, a key file, and decrypt-only old keys; rejects bad keys by name', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyring-'));
    const k = randomBytes(32).toString('base64');
    const old = randomBytes(32).toString('base64');
    const c = loadSecretCipher({ key: k, oldKeys: old, dataDir: dir });
    expect(c.keyIds()).toHaveLength(2);
    const file = join(dir, 'k');
    writeFileSync(file, `${k}\n`, { mode: 0o600 });
    expect(loadSecretCipher({ keyFile: file, dataDir: dir }).currentKeyId).toBe(c.currentKeyId);
    expect(() => loadSecretCipher({ key: 'short', dataDir: dir })).toThrow(/AGENT_PLATFORM_SECRET_KEY must be the base64/);
  });
});
