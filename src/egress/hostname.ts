/** Result of checking a DNS host name: the normalised name, or why it is not one. */
export type HostnameCheck = { readonly host: string } | { readonly error: string };

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * Normalises a DNS host name: lower case, one trailing dot removed. Pure.
 *
 * Accepts letters, digits, hyphens and underscores (container and compose service names use
 * underscores). Rejects non-ASCII (write punycode, `xn--...`) and names whose last label is
 * all digits: `2130706433` or `10.1` are numeric addresses to getaddrinfo, so letting them
 * through as names would let an agent reach an address no IP rule allowed.
 */
export function checkHostname(text: string): HostnameCheck {
  let host = text.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0) return { error: 'host name is empty' };
  if (host.length > 253) return { error: 'host name is longer than 253 characters' };
  if (/[^\x00-\x7f]/.test(host)) return { error: 'host name must be ASCII (write internationalised names as punycode, xn--...)' };
  const labels = host.split('.');
  for (const label of labels) {
    if (!LABEL.test(label)) return { error: `"${label}" is not a valid DNS label (letters, digits, "-", "_"; 1-63 characters; no leading or trailing "-")` };
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) {
    return { error: 'the last label is numeric, which is an address, not a host name (write IPv4 addresses as a.b.c.d)' };
  }
  return { host };
}
