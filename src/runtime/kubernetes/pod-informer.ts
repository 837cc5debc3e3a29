import { setTimeout as sleep } from 'node:timers/promises';
import { isKubeStatus, KubeApiError, type KubeClient } from './kube-client.js';
import type { KubeList, KubePod, KubeStatus } from './kube-types.js';

/** Called with the previous and the new version of a Pod (undefined: absent). */
export type PodChangeListener = (prev: KubePod | undefined, next: KubePod | undefined) => void;

export interface PodInformerOptions {
  client: KubeClient;
  /** Label selector of the Pods to mirror, e.g. "io.agent-platform.managed=true". */
  labelSelector: string;
  /** @default 250 */
  reconnectInitialMs?: number | undefined;
  /** @default 5_000 */
  reconnectMaxMs?: number | undefined;
  /**
   * Server-side timeout of one watch request; the informer then re-watches from the
   * last resourceVersion it saw (no relist), which keeps idle connections honest.
   * @default 300
   */
  watchTimeoutSeconds?: number | undefined;
  /** Told about list and watch failures the informer retries on its own. */
  onError?: ((err: unknown) => void) | undefined;
}

/**
 * A cluster-wide, label-selected mirror of Pods: list once, then watch from the list's
 * resourceVersion, with bookmarks (so a quiet selection still advances the resume
 * point), a relist when the server answers 410 Gone (history compacted), and reconnects
 * with capped exponential backoff after errors. The runtime reads inspect() and list()
 * from this cache and derives its events from the changes, so the number of requests does
 * not grow with the number of agents.
 */
export class PodInformer {
  private readonly pods = new Map<string, KubePod>();
  private readonly listeners = new Set<PodChangeListener>();
  private readonly abort = new AbortController();
  private readonly options: Required<Omit<PodInformerOptions, 'onError'>> & Pick<PodInformerOptions, 'onError'>;
  private resourceVersion = '';
  private synced = false;
  private loop: Promise<void> | undefined;
  /** Full lists done so far (the first one included); tests watch it for 410 handling. */
  relists = 0;
  /** The last list or watch failure, named when a wait for the first list times out. */
  private lastError: unknown;

  constructor(options: PodInformerOptions) {
    this.options = {
      reconnectInitialMs: 250,
      reconnectMaxMs: 5_000,
      watchTimeoutSeconds: 300,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    } as PodInformer['options'];
  }

  /** Starts listing and watching (once); returns at once. */
  start(): void {
    this.loop ??= this.run().catch((err: unknown) => this.options.onError?.(err));
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list is in the cache. */
  async waitForSync(signal?: AbortSignal, timeoutMs = 30_000): Promise<void> {
    this.start();
    if (this.synced) return;
    try {
      await this.waitUntil(() => this.synced, signal, timeoutMs, 'the first list of Pods from the Kubernetes API');
    } catch (err) {
      if (this.lastError === undefined || signal?.aborted) throw err;
      const cause = this.lastError instanceof Error ? this.lastError.message : String(this.lastError);
      throw new KubeApiError(0, 'Unavailable', `${(err as Error).message}; last error: ${cause}`);
    }
  }

  /** The cached Pod with this name (Pod names are unique across namespaces here). */
  get(name: string): KubePod | undefined {
    return this.pods.get(name);
  }

  list(): KubePod[] {
    return [...this.pods.values()];
  }

  onChange(listener: PodChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves when `condition` holds for the cache: checked now and after every change.
   * Rejects on abort, or after timeoutMs with a message naming `what`.
   */
  async waitUntil(condition: () => boolean, signal: AbortSignal | undefined, timeoutMs: number, what: string): Promise<void> {
    if (condition()) return;
    await new Promise<void>((resolve, reject) => {
      let finished = false;
      const finish = (err?: unknown): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        clearInterval(poll);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        this.abort.signal.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      const check = (): void => {
        try {
          if (condition()) finish();
        } catch (err) {
          finish(err);
        }
      };
      const onAbort = (): void => finish(signal?.aborted ? signal.reason : new Error('the Kubernetes runtime was closed'));
      const timer = setTimeout(() => finish(new KubeApiError(0, 'Timeout', `timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      // Some conditions depend on the clock as well as on the cache.
      const poll = setInterval(check, 250);
      const unsubscribe = this.onChange(check);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted || this.abort.signal.aborted) onAbort();
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private emit(prev: KubePod | undefined, next: KubePod | undefined): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(prev, next);
      } catch (err) {
        this.options.onError?.(err);
      }
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let backoffMs = this.options.reconnectInitialMs;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === '') await this.relist(signal);
        let expired = false;
        await this.options.client.watch<KubePod>(
          '/api/v1/pods',
          {
            labelSelector: this.options.labelSelector,
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds: this.options.watchTimeoutSeconds,
          },
          (event) => {
            if (event.type === 'ERROR') {
              const status = event.object as KubeStatus;
              if (status.code === 410) {
                expired = true;
                return;
              }
              throw new KubeApiError(status.code ?? 0, status.reason ?? 'Unknown', `watch error: ${status.message}`, status);
            }
            this.apply(event.type, event.object as KubePod);
          },
          signal,
        );
        // 410 Gone: the resume point was compacted away; only a new list is consistent.
        if (expired) this.resourceVersion = '';
        backoffMs = this.options.reconnectInitialMs;
      } catch (err) {
        if (signal.aborted) return;
        if (isKubeStatus(err, 410)) {
          this.resourceVersion = '';
          continue;
        }
        this.lastError = err;
        this.options.onError?.(err);
        await sleep(backoffMs, undefined, { signal }).catch(() => undefined);
        backoffMs = Math.min(this.options.reconnectMaxMs, backoffMs * 2);
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    const list = await this.options.client.request<KubeList<KubePod>>('/api/v1/pods', { query: { labelSelector: this.options.labelSelector }, signal });
    this.relists++;
    const seen = new Set<string>();
    for (const pod of list.items) {
      seen.add(pod.metadata.name);
      const prev = this.pods.get(pod.metadata.name);
      if (prev?.metadata.resourceVersion === pod.metadata.resourceVersion && prev?.metadata.uid === pod.metadata.uid) continue;
      this.pods.set(pod.metadata.name, pod);
      this.emit(prev, pod);
    }
    // Deleted while we were not watching.
    for (const [name, prev] of [...this.pods]) {
      if (!seen.has(name)) {
        this.pods.delete(name);
        this.emit(prev, undefined);
      }
    }
    this.resourceVersion = list.metadata.resourceVersion ?? '';
    this.synced = true;
    this.lastError = undefined;
    this.emit(undefined, undefined);
  }

  private apply(type: string, pod: KubePod): void {
    const rv = pod.metadata?.resourceVersion;
    if (type === 'BOOKMARK') {
      if (rv) this.resourceVersion = rv;
      return;
    }
    const name = pod.metadata.name;
    const prev = this.pods.get(name);
    if (type === 'DELETED') {
      // A late DELETED for a Pod already replaced under the same name must not drop the new one.
      if (prev && prev.metadata.uid === pod.metadata.uid) {
        this.pods.delete(name);
        this.emit(prev, undefined);
      }
    } else if (type === 'ADDED' || type === 'MODIFIED') {
      this.pods.set(name, pod);
      this.emit(prev, pod);
    }
    if (rv) this.resourceVersion = rv;
  }
}
