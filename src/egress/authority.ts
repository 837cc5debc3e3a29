import { checkHostname } from './hostname.js';
import { formatIp, parseIp, unmapIp, type IpAddress } from './ip-address.js';

/** A destination named by an agent: a host name or an IP literal, and a port. */
export interface EgressTarget {
  /** Normalised host name, or the canonical text of `ip` for an IP literal. */
  readonly host: string;
  /** Set when the destination is an IP literal (IPv4-mapped IPv6 is given as IPv4). */
  readonly ip?: IpAddress;
  readonly port: number;
}

export type AuthorityParse = { readonly target: EgressTarget } | { readonly error: string };

const PORT = /^[1-9][0-9]{0,4}$/;

/**
 * Parses an authority: `host:port`, `a.b.c.d:port`, `[v6]:port`, or without `:port` when
 * `defaultPort` is given (Host headers, absolute-form URLs). Pure; never throws.
 */
export function parseAuthority(text: string, defaultPort?: number): AuthorityParse {
  let hostText: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return { error: 'unterminated "[" in authority' };
    hostText = text.slice(1, close);
    const after = text.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) return { error: 'unexpected text after "]"' };
    portText = after === '' ? undefined : after.slice(1);
    if (!hostText.includes(':')) return { error: 'brackets are only for IPv6 addresses' };
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0 && text.indexOf(':') !== colon) return { error: 'IPv6 addresses must be written in brackets, [addr]:port' };
    hostText = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return { error: 'a port is required (host:port)' };
    port = defaultPort;
  } else {
    if (!PORT.test(portText) || Number(portText) > 65535) return { error: `"${portText}" is not a port from 1 to 65535` };
    port = Number(portText);
  }
  const parsedIp = parseIp(hostText);
  if (parsedIp !== undefined) {
    const ip = unmapIp(parsedIp);
    return { target: { host: formatIp(ip), ip, port } };
  }
  if (hostText.includes(':')) return { error: `"${hostText}" is not a valid IPv6 address` };
  const checked = checkHostname(hostText);
  if ('error' in checked) return { error: checked.error };
  return { target: { host: checked.host, port } };
}

/** Formats a target as `host:port` (`[v6]:port` for IPv6). */
export function formatTarget(target: { host: string; port: number | null }): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return target.port === null ? host : `${host}:${target.port}`;
}
