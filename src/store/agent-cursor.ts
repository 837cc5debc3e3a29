import { InputError } from '../domain/errors.js';

/** Position in the (createdAt, id) order of agents: the last item of a page. */
export interface AgentCursor {
  createdAt: number;
  id: string;
}

/** Opaque to clients: base64url of a small JSON tuple, so its shape can change later. */
export const encodeAgentCursor = (cursor: AgentCursor): string =>
  Buffer.from(JSON.stringify([cursor.createdAt, cursor.id]), 'utf8').toString('base64url');

/** Throws InputError(INVALID_CURSOR) for anything that encodeAgentCursor did not produce. */
export function decodeAgentCursor(text: string): AgentCursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || !Number.isSafeInteger(parsed[0]) || typeof parsed[1] !== 'string') {
    throw new InputError('cursor is not one this server issued; start again without a cursor', { cursor: text }, 'INVALID_CURSOR');
  }
  return { createdAt: parsed[0] as number, id: parsed[1] };
}
