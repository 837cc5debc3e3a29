import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { InputError } from '../domain/errors.js';

/** What `~/.config/agentctl/config.yaml` may hold. Every field is optional. */
export interface ConfigFile {
  /** Base URL of the platform API, e.g. http://127.0.0.1:8080. */
  server?: string;
  /** Bearer token sent as `Authorization: Bearer <token>`. */
  token?: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Where the config file lives, and whether the user named it (then it must exist). */
export interface ConfigLocation {
  path: string;
  explicit: boolean;
}

/**
 * $AGENTCTL_CONFIG if set, else $XDG_CONFIG_HOME/agentctl/config.yaml, else
 * ~/.config/agentctl/config.yaml. Returns undefined when no home directory is known.
 */
export function configFileLocation(env: Env, flagPath?: string): ConfigLocation | undefined {
  if (flagPath) return { path: flagPath, explicit: true };
  if (env.AGENTCTL_CONFIG) return { path: env.AGENTCTL_CONFIG, explicit: true };
  if (env.XDG_CONFIG_HOME) return { path: join(env.XDG_CONFIG_HOME, 'agentctl', 'config.yaml'), explicit: false };
  if (env.HOME) return { path: join(env.HOME, '.config', 'agentctl', 'config.yaml'), explicit: false };
  return undefined;
}

/** Validates parsed YAML; the error names the file and the bad key so it can be fixed. */
export function parseConfigFile(text: string, path: string): ConfigFile {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new InputError(`config file ${path} is not valid YAML: ${(err as Error).message}`, { path }, 'INVALID_CONFIG');
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new InputError(`config file ${path} must be a mapping with "server" and "token" keys`, { path }, 'INVALID_CONFIG');
  const out: ConfigFile = {};
  for (const [key, value] of Object.entries(doc)) {
    if (key !== 'server' && key !== 'token') continue; // room for future keys (contexts, output defaults)
    if (value === null || value === undefined) continue;
    if (typeof value !== 'string') throw new InputError(`config file ${path}: "${key}" must be a string`, { path, key }, 'INVALID_CONFIG');
    out[key] = value;
  }
  return out;
}

/** Reads the config file; a missing default file is fine, a missing named file is an error. */
export async function readConfigFile(location: ConfigLocation | undefined): Promise<ConfigFile> {
  if (!location) return {};
  let text: string;
  try {
    text = await readFile(location.path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !location.explicit) return {};
    throw new InputError(`cannot read config file ${location.path}: ${(err as Error).message}`, { path: location.path }, 'INVALID_CONFIG');
  }
  return parseConfigFile(text, location.path);
}
