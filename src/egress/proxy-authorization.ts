/** Credentials a client sent in `Proxy-Authorization: Basic ...` (RFC 7617). */
export interface ProxyCredentials {
  readonly username: string;
  readonly password: string;
}

/** Longest header value looked at; a longer one is malformed (agent ids and tokens are short). */
const MAX_HEADER_CHARS = 1024;

/**
 * Reads the credentials of a `Proxy-Authorization` header value. Pure. Clients put the
 * userinfo of a proxy URL (`http://user:pass@proxy:3128`) there as Basic: curl, Python
 * (requests, urllib), Go's net/http and Node's proxy agents all do.
 *
 * - `undefined` (no header): `{ kind: 'missing' }`;
 * - more than one value, another scheme, bad base64, no ":" or an over-long value:
 *   `{ kind: 'malformed', detail }` (the detail never echoes the value: it may hold a token);
 * - otherwise `{ kind: 'basic', credentials }`, split at the first ":" (RFC 7617: the user id
 *   cannot hold one, the password can). Percent-escapes are not decoded: clients decode the
 *   URL's userinfo before they encode it.
 */
export function parseProxyAuthorization(
  header: string | readonly string[] | undefined,
): { kind: 'missing' } | { kind: 'malformed'; detail: string } | { kind: 'basic'; credentials: ProxyCredentials } {
  if (header === undefined) return { kind: 'missing' };
  if (typeof header !== 'string') return header.length === 0 ? { kind: 'missing' } : { kind: 'malformed', detail: 'more than one Proxy-Authorization header' };
  if (header.length > MAX_HEADER_CHARS) return { kind: 'malformed', detail: `Proxy-Authorization longer than ${MAX_HEADER_CHARS} characters` };
  const match = /^\s*([A-Za-z]+)\s+([A-Za-z0-9+/]+={0,2})\s*$/.exec(header);
  if (match === null) return { kind: 'malformed', detail: 'Proxy-Authorization is not "Basic <base64>"' };
  if (match[1]!.toLowerCase() !== 'basic') return { kind: 'malformed', detail: `Proxy-Authorization scheme "${match[1]!.slice(0, 20)}" is not supported; use Basic` };
  const decoded = Buffer.from(match[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { kind: 'malformed', detail: 'Proxy-Authorization Basic value has no ":" between user and password' };
  return { kind: 'basic', credentials: { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) } };
}

/** The value of a `Proxy-Authenticate` challenge for Basic credentials. */
export const PROXY_AUTHENTICATE = 'Basic realm="agent-platform egress", charset="UTF-8"';
