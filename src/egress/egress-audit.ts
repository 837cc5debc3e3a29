/**
 * Why the proxy allowed or refused a connection attempt. Stable strings: store them, alert
 * on them.
 *
 * - `allowed`: the attempt passed every check (bytes and duration tell how it went).
 * - `unknown-source`: the source IP is not a registered agent; on a credential listener
 *   (Kubernetes agents), the credentials are valid but the agent is not running there in
 *   allowlist mode (deleted, stopped, moved to another node, or another network mode).
 * - `proxy-auth-required`: on a credential listener, the Proxy-Authorization credentials are
 *   missing, malformed, or not those of a known agent (answered 407).
 * - `auth-unavailable`: on a credential listener, the credentials could not be checked (the
 *   store did not answer; answered 503).
 * - `not-in-allowlist`: no rule allows this host (or address) and port.
 * - `private-address`: the destination is, or resolved to, a special-purpose address
 *   (loopback, private, link-local, metadata, CGNAT, multicast, unspecified, reserved) and
 *   no address rule names it.
 * - `denied-range`: the destination is in the operator's `deniedRanges` (never unlockable).
 * - `invalid-host`: the requested host is not a valid name or address.
 * - `host-mismatch`: plain HTTP whose Host header names another host than the request line.
 * - `sni-mismatch`: the TLS ClientHello names another server than the CONNECT target.
 * - `tls-malformed`: on a TLS-checked port, the client sent a broken ClientHello.
 * - `client-hello-timeout`: on a TLS-checked port, the client sent no ClientHello in time.
 * - `malformed-request`: not parseable as an HTTP proxy request (answered 400 or 431).
 * - `unsupported-request`: valid HTTP the proxy does not forward (origin-form, https://
 *   absolute-form, Upgrade over plain HTTP).
 * - `dns-failure`: the name did not resolve (or timed out).
 * - `upstream-error`: connecting to the destination failed (answered 502).
 * - `connect-timeout`: connecting to the destination timed out (answered 504).
 * - `too-many-connections`: the agent has too many open connections (answered 429).
 * - `proxy-closing`: the proxy is shutting down (answered 503).
 */
export type EgressReason =
  | 'allowed'
  | 'unknown-source'
  | 'proxy-auth-required'
  | 'auth-unavailable'
  | 'not-in-allowlist'
  | 'private-address'
  | 'denied-range'
  | 'invalid-host'
  | 'host-mismatch'
  | 'sni-mismatch'
  | 'tls-malformed'
  | 'client-hello-timeout'
  | 'malformed-request'
  | 'unsupported-request'
  | 'dns-failure'
  | 'upstream-error'
  | 'connect-timeout'
  | 'too-many-connections'
  | 'proxy-closing';

/** One connection attempt through the egress proxy. */
export interface EgressAuditRecord {
  /** When the attempt started, milliseconds since the Unix epoch. */
  time: number;
  /** The registered (or authenticated) agent, or null when the source or credentials are unknown. */
  agentId: string | null;
  tenantId: string | null;
  /** Canonical source address of the agent's connection (IPv4-mapped shown as IPv4). */
  sourceIp: string;
  /** `CONNECT` for tunnels, `HTTP` for forwarded plain-HTTP requests. */
  method: 'CONNECT' | 'HTTP';
  /** The requested host (normalised), or the raw text when it was invalid; '' when unknown. */
  host: string;
  /** The requested port, or null when the request could not be parsed. */
  port: number | null;
  /** The address the proxy connected to, or the address that caused a deny. */
  resolvedIp?: string;
  /** Server name from the TLS ClientHello, when the proxy looked at one. */
  sni?: string;
  /** The allow rule that matched, as written. */
  rule?: string;
  decision: 'allow' | 'deny';
  reason: EgressReason;
  /** Human detail: the deny message, or how an allowed connection ended (e.g. idle-timeout). */
  detail?: string;
  /** The status the proxy answered with (200 for an established tunnel), if it answered. */
  httpStatus?: number;
  /** Bytes sent from the agent to the destination (including request headers for HTTP). */
  bytesUp: number;
  /** Bytes received from the destination (including response headers for HTTP). */
  bytesDown: number;
  /** From the start of the attempt to the record. */
  durationMs: number;
}

/**
 * Where audit records go. The proxy calls record() once per attempt: for a deny right away,
 * for an allowed connection when it closes. Implementations must be quick (the proxy is on
 * the data path): buffer and write in batches. A thrown error or rejected promise is logged
 * and otherwise ignored; the connection is not affected.
 */
export interface AuditSink {
  record(entry: EgressAuditRecord): void | Promise<void>;
}
