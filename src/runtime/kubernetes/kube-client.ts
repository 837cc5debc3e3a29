import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import type { KubeConfig } from '@kubernetes/client-node';
import { DomainError } from '../../domain/errors.js';
import type { KubeStatus, KubeWatchEvent } from './kube-types.js';
import { linkSignals } from '../../domain/linked-signal.js';

/** Where the cluster credentials come from; all optional. */
export interface KubeClientOptions {
  /**
   * Path of a kubeconfig file.
   * @default $KUBECONFIG, else ~/.kube/config, else the in-cluster service account
   */
  kubeconfigPath?: string | undefined;
  /** Context to use from the kubeconfig. @default its current-context */
  context?: string | undefined;
  /**
   * Use the Pod's service account (token and CA under
   * /var/run/secrets/kubernetes.io/serviceaccount) and ignore any kubeconfig.
   * @default false
   */
  inCluster?: boolean | undefined;
  /**
   * Deadline of each non-streaming call; for streams it bounds the wait for headers.
   * @default 30_000
   */
  callTimeoutMs?: number | undefined;
}

/**
 * An error answer of the API server (its metav1.Status), or a transport failure
 * (`httpStatus` 0). `reason` is Kubernetes' machine-readable reason: NotFound,
 * AlreadyExists, Conflict, Expired (410 Gone), Invalid, Forbidden, ...
 */
export class KubeApiError extends DomainError {
  constructor(
    readonly httpStatus: number,
    readonly reason: string,
    message: string,
    readonly status?: KubeStatus,
  ) {
    super(httpStatus === 0 ? 'KUBERNETES_UNAVAILABLE' : `KUBERNETES_${reason.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}`, message, {
      httpStatus,
      reason,
    });
  }
}

export const isKubeStatus = (err: unknown, httpStatus: number): err is KubeApiError => err instanceof KubeApiError && err.httpStatus === httpStatus;

export interface KubeRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | undefined;
  query?: Record<string, string | number | boolean | undefined> | undefined;
  body?: unknown;
  /** @default "application/json" when there is a body */
  contentType?: string | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * Thin JSON-over-HTTP client for the Kubernetes API. @kubernetes/client-node's
 * KubeConfig does what is hard to get right (kubeconfig files and contexts, in-cluster
 * service accounts, client certificates, bearer tokens, exec credential plugins, TLS);
 * the requests themselves are plain JSON, so the objects the adapter builds go on the
 * wire exactly as written (the generated API classes would re-serialize them through
 * their own type map) and watches and logs are read as streams the adapter controls.
 */
export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly server: URL;
  readonly contextName: string;
  private readonly callTimeoutMs: number;

  constructor(kubeConfig: KubeConfig, options: { callTimeoutMs?: number | undefined } = {}) {
    this.kubeConfig = kubeConfig;
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new DomainError('KUBERNETES_CONFIG', 'the kubeconfig has no current cluster; set current-context or pass a context');
    this.server = new URL(cluster.server);
    this.contextName = kubeConfig.getCurrentContext() || 'in-cluster';
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
  }

  /** Loads credentials as KubeClientOptions describes. */
  static load(options: KubeClientOptions = {}): KubeClient {
    const kc = new (loadClientNode().KubeConfig)();
    if (options.inCluster) kc.loadFromCluster();
    else if (options.kubeconfigPath) kc.loadFromFile(options.kubeconfigPath);
    else kc.loadFromDefault();
    if (options.context) {
      if (!kc.getContextObject(options.context)) {
        throw new DomainError('KUBERNETES_CONFIG', `context "${options.context}" is not in the kubeconfig (has: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'})`);
      }
      kc.setCurrentContext(options.context);
    }
    return new KubeClient(kc, { callTimeoutMs: options.callTimeoutMs });
  }

  /** One JSON request; resolves with the parsed body, throws KubeApiError on a non-2xx answer. */
  async request<T>(path: string, req: KubeRequest = {}): Promise<T> {
    const res = await this.open(path, req, true);
    const text = await readAll(res, req.signal);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) throw errorFromBody(status, text, `${req.method ?? 'GET'} ${path}`);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /**
   * Opens a streaming GET (logs); resolves with the response once the headers say 2xx.
   * The caller reads it and must destroy it when done; aborting `signal` ends it.
   */
  async stream(path: string, query: KubeRequest['query'], signal?: AbortSignal): Promise<IncomingMessage> {
    const res = await this.open(path, { query, signal }, false);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) throw errorFromBody(status, await readAll(res, signal), `GET ${path}`);
    return res;
  }

  /**
   * Runs one watch request: calls onEvent for every JSON line until the server ends the
   * stream (resolves) or the connection fails (rejects). An ERROR event is passed on
   * like any other; the caller decides (410 means relist).
   */
  async watch<T>(path: string, query: KubeRequest['query'], onEvent: (event: KubeWatchEvent<T>) => void, signal: AbortSignal): Promise<void> {
    const res = await this.stream(path, { ...query, watch: 'true' }, signal);
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    // A destroyed response does not always end readline's iterator: close it as well.
    const onAbort = (): void => {
      lines.close();
      res.destroy();
    };
    res.once('close', () => lines.close());
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const line of lines) {
        if (line.trim() === '') continue;
        onEvent(JSON.parse(line) as KubeWatchEvent<T>);
      }
      if (!res.complete && !signal.aborted) throw new KubeApiError(0, 'ConnectionLost', `watch ${path} ended before the server finished it`);
    } finally {
      signal.removeEventListener('abort', onAbort);
      res.destroy();
    }
  }

  private async open(path: string, req: KubeRequest, bounded: boolean): Promise<IncomingMessage> {
    const url = new URL(this.server.toString().replace(/\/$/, '') + path);
    for (const [key, value] of Object.entries(req.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    const body = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
    const options: RequestOptions & { headers: Record<string, string> } = {
      method: req.method ?? 'GET',
      headers: { accept: 'application/json' },
    };
    if (body) {
      options.headers['content-type'] = req.contentType ?? 'application/json';
      options.headers['content-length'] = String(body.length);
    }
    // Adds TLS material, bearer token or client certificate, running exec plugins if any.
    await this.kubeConfig.applyToHTTPSOptions(options);
    const timeout = AbortSignal.timeout(this.callTimeoutMs);
    const call = linkSignals(req.signal, timeout);
    const signal = call.signal;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return await new Promise<IncomingMessage>((resolve, reject) => {
      const clientRequest = send(url, { ...options, signal: bounded ? signal : undefined }, (res) => {
        signal.removeEventListener('abort', onHeadersAbort);
        if (!bounded && req.signal) {
          // Streams outlive the call deadline but still end with the caller's signal.
          const callerSignal = req.signal;
          const end = (): void => {
            res.destroy();
          };
          callerSignal.addEventListener('abort', end, { once: true });
          res.once('close', () => callerSignal.removeEventListener('abort', end));
        }
        // The link must outlive the headers: a bounded call's body is read under it.
        res.once('close', call.dispose);
        resolve(res);
      });
      const onHeadersAbort = (): void => {
        clientRequest.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      if (!bounded) signal.addEventListener('abort', onHeadersAbort, { once: true });
      clientRequest.on('error', (err) => {
        call.dispose();
        reject(
          signal.aborted && req.signal?.aborted
            ? req.signal.reason
            : new KubeApiError(0, 'ConnectionFailed', `${options.method} ${url.pathname}: ${err.message} (Kubernetes API at ${this.server.origin})`),
        );
      });
      clientRequest.end(body);
    });
  }
}

async function readAll(res: IncomingMessage, signal?: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of res) chunks.push(chunk as Buffer);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new KubeApiError(0, 'ConnectionLost', `reading the answer failed: ${(err as Error).message}`);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function errorFromBody(httpStatus: number, text: string, what: string): KubeApiError {
  try {
    const status = JSON.parse(text) as KubeStatus;
    if (status.kind === 'Status') return new KubeApiError(httpStatus, status.reason || String(httpStatus), `${what}: ${status.message}`, status);
  } catch {
    // Not a Status: a proxy or a misconfigured server answered.
  }
  return new KubeApiError(httpStatus, httpStatus === 401 ? 'Unauthorized' : 'Unknown', `${what}: HTTP ${httpStatus} ${text.slice(0, 200)}`);
}

/**
 * @kubernetes/client-node, loaded on first use: importing it costs about 65 MiB of RSS
 * (generated API classes for every resource kind), which every platform process paid
 * at startup even with no Kubernetes node configured.
 */
function loadClientNode(): typeof import('@kubernetes/client-node') {
  return createRequire(import.meta.url)('@kubernetes/client-node') as typeof import('@kubernetes/client-node');
}
