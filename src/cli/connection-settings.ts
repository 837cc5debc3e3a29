import { InputError } from '../domain/errors.js';
import type { ConfigFile, Env } from './config-file.js';

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';

/** Server and token after precedence is applied, with where each came from (for messages). */
export interface ConnectionSettings {
  /** Base URL without a trailing slash. */
  server: string;
  token?: string | undefined;
  serverSource: string;
  tokenSource?: string | undefined;
}

export interface ConnectionInputs {
  flags: { server?: string | undefined; token?: string | undefined };
  env: Env;
  file: ConfigFile;
  filePath?: string | undefined;
}

/** First non-empty candidate wins; an empty env var counts as unset, as shells export "" easily. */
function pick(candidates: Array<[string | undefined, string]>): [string, string] | undefined {
  for (const [value, source] of candidates) if (value !== undefined && value !== '') return [value, source];
  return undefined;
}

/** Precedence: flags > environment > config file > defaults. */
export function resolveConnectionSettings(inputs: ConnectionInputs): ConnectionSettings {
  const fileLabel = `config file ${inputs.filePath ?? ''}`.trim();
  const server = pick([
    [inputs.flags.server, '--server'],
    [inputs.env.AGENTCTL_SERVER, 'AGENTCTL_SERVER'],
    [inputs.env.AGENT_PLATFORM_URL, 'AGENT_PLATFORM_URL'],
    [inputs.file.server, fileLabel],
  ]) ?? [DEFAULT_SERVER, 'default'];
  const token = pick([
    [inputs.flags.token, '--token'],
    [inputs.env.AGENTCTL_TOKEN, 'AGENTCTL_TOKEN'],
    [inputs.env.AGENT_PLATFORM_ADMIN_TOKEN, 'AGENT_PLATFORM_ADMIN_TOKEN'],
    [inputs.file.token, fileLabel],
  ]);
  return { server: normaliseServerUrl(server[0], server[1]), serverSource: server[1], token: token?.[0], tokenSource: token?.[1] };
}

function normaliseServerUrl(value: string, source: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InputError(`server URL "${value}" from ${source} is not a URL; use e.g. http://127.0.0.1:8080`, { source, value }, 'INVALID_ARGUMENT');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InputError(`server URL "${value}" from ${source} must start with http:// or https://`, { source, value }, 'INVALID_ARGUMENT');
  }
  return url.toString().replace(/\/+$/, '');
}
