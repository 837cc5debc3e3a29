import { connect, type Socket } from 'node:net';
import { formatIp, type IpAddress } from './ip-address.js';

/** Connecting to the destination failed; `timedOut` tells a timeout from a refusal. */
export class UpstreamConnectError extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
  ) {
    super(message);
    this.name = 'UpstreamConnectError';
  }
}

function connectOne(ip: IpAddress, port: number, timeoutMs: number, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const host = formatIp(ip);
    const socket = connect({ host, port, family: ip.family, noDelay: true });
    const timer = setTimeout(() => fail(new UpstreamConnectError(`connect to ${host}:${port} timed out after ${timeoutMs} ms`, true)), timeoutMs);
    const onAbort = (): void => fail(new UpstreamConnectError(`connect to ${host}:${port} aborted`, false));
    const cleanup = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.removeListener('error', onError);
      socket.removeListener('connect', onConnect);
    };
    function fail(err: Error): void {
      cleanup();
      socket.destroy();
      reject(err);
    }
    function onError(err: Error): void {
      fail(new UpstreamConnectError(`connect to ${host}:${port} failed: ${err.message}`, false));
    }
    function onConnect(): void {
      cleanup();
      resolve(socket);
    }
    socket.once('error', onError);
    socket.once('connect', onConnect);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Connects to the first of `addresses` that accepts, in order, within `timeoutMs` in total.
 * The addresses are the vetted ones: this never resolves a name, so what was checked is what
 * is reached. The returned socket has no error listener; the caller must add one.
 * @throws UpstreamConnectError naming the last failure (timedOut when time ran out).
 */
export async function connectUpstream(
  addresses: readonly IpAddress[],
  port: number,
  options: { readonly timeoutMs: number; readonly signal: AbortSignal },
): Promise<Socket> {
  const deadline = Date.now() + options.timeoutMs;
  let last: UpstreamConnectError = new UpstreamConnectError('no address to connect to', false);
  for (const ip of addresses) {
    const left = deadline - Date.now();
    if (left <= 0) throw new UpstreamConnectError(last.timedOut ? last.message : `connect to port ${port} timed out after ${options.timeoutMs} ms`, true);
    try {
      return await connectOne(ip, port, left, options.signal);
    } catch (err) {
      last = err instanceof UpstreamConnectError ? err : new UpstreamConnectError(String(err), false);
      if (options.signal.aborted) throw last;
    }
  }
  throw last;
}
