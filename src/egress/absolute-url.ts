import { parseAuthority, type EgressTarget } from './authority.js';
import type { EgressReason } from './egress-audit.js';

export type AbsoluteUrlParse =
  | { readonly target: EgressTarget; readonly path: string }
  | { readonly reason: Extract<EgressReason, 'unsupported-request' | 'invalid-host' | 'malformed-request'>; readonly error: string };

/**
 * Parses the request target of a plain-HTTP proxy request, which must be absolute-form
 * (`http://host[:port]/path?query`). Pure; never throws. The fragment is dropped, userinfo
 * is refused (it would be a second, differently parsed host), and `https://` is refused:
 * HTTPS goes through CONNECT.
 */
export function parseAbsoluteHttpUrl(url: string): AbsoluteUrlParse {
  if (url.startsWith('/') || url === '*') {
    return { reason: 'unsupported-request', error: 'this is an egress proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port' };
  }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url);
  if (scheme === null) return { reason: 'malformed-request', error: 'request target is not an absolute http:// URL' };
  const name = (scheme[1] ?? '').toLowerCase();
  if (name === 'https') return { reason: 'unsupported-request', error: 'https:// is not forwarded as plain HTTP; use CONNECT host:443' };
  if (name !== 'http') return { reason: 'unsupported-request', error: `scheme "${name}" is not supported; use CONNECT for other protocols` };
  const rest = url.slice(scheme[0].length);
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  if (authority.includes('@')) return { reason: 'malformed-request', error: 'user information in the URL is not allowed' };
  const parsed = parseAuthority(authority, 80);
  if ('error' in parsed) return { reason: 'invalid-host', error: parsed.error };
  let path = end < 0 ? '' : rest.slice(end);
  const hash = path.indexOf('#');
  if (hash >= 0) path = path.slice(0, hash);
  if (!path.startsWith('/')) path = `/${path}`;
  return { target: parsed.target, path };
}
