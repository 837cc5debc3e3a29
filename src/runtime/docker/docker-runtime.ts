import { Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import type Docker from 'dockerode';
import { newDockerClient } from './docker-client.js';
import type DockerModem from 'docker-modem';
import { ConflictError, NotFoundError } from '../../domain/errors.js';
import {
  AGENT_ID_LABEL,
  ImageNotFoundError,
  INSTANCE_LABEL,
  MANAGED_LABEL,
  type ContainerSpec,
  type LogLine,
  type LogOptions,
  type NodeInfo,
  type ObservedContainer,
  type Runtime,
  type RuntimeEvent,
} from '../runtime.js';
import { buildContainerConfig, resolveContainerConfigOptions, type ContainerConfigOptions } from './container-config.js';
import { DockerApiError, toRuntimeError, type DockerCallContext } from './docker-errors.js';
import { JsonLineSplitter, dockerSinceParam, parseDockerEvent } from './docker-events.js';
import { formatDockerEndpoint, parseDockerHost, type DockerEndpoint } from './docker-host.js';
import { DockerLogDecoder } from './docker-logs.js';
import { linkSignals } from '../../domain/linked-signal.js';
import {
  observedFromInspect,
  observedFromListEntry,
  type DockerInspectResponse,
  type DockerListEntry,
} from './observed-container.js';

/** User options of the Docker adapter; one instance drives one Docker host (one node). */
export interface DockerRuntimeOptions {
  nodeId: string;
  /**
   * `unix:///path/docker.sock` or `tcp://host:port`.
   * @default process.env.DOCKER_HOST, else unix:///var/run/docker.sock
   */
  dockerHost?: string | undefined;
  /** Lock-down settings for every container this node creates (uid, ulimits, network, OCI runtime). */
  defaultSecurity?: Partial<ContainerConfigOptions> | undefined;
  /**
   * Deadline of each non-streaming API call (stop adds its grace period). For log and
   * event streams it bounds only the wait for the response headers.
   * @default 30_000
   */
  callTimeoutMs?: number | undefined;
  /** @default 250 */
  watchReconnectInitialMs?: number | undefined;
  /** @default 5_000 */
  watchReconnectMaxMs?: number | undefined;
  /**
   * How far before `watch()` was called the first event subscription reaches back, so an
   * event between the call and the connection is not lost and a small clock skew against
   * a remote daemon does not hide events. Replayed events are harmless to a
   * level-triggered consumer.
   * @default 1_000
   */
  watchReplayMs?: number | undefined;
}

type DialOptions = Omit<DockerModem.DialOptions, 'abortSignal'>;

interface DockerInfoResponse {
  NCPU?: number;
  MemTotal?: number;
  OSType?: string;
  Architecture?: string;
  ServerVersion?: string;
  Runtimes?: Record<string, unknown> | null;
}

/** Docker runtime names the platform knows, mapped to its isolation classes. */
const ISOLATION_BY_DOCKER_RUNTIME: Record<string, string | undefined> = { runc: 'runc', runsc: 'gvisor' };

/** Rounds of create -> 409 -> inspect 404 before giving up (about 1.3 s of backoff). */
const CREATE_CONFLICT_ATTEMPTS = 7;

const isStatus = (err: unknown, status: number): err is DockerApiError => err instanceof DockerApiError && err.statusCode === status;

/**
 * How long after a container's exit 137 its "oom" event may still arrive: the daemon can
 * emit it after the exit (one run of the escape test here saw OOMKilled false at once).
 * Only SIGKILL exits without the flag wait, and only while this soon after the exit.
 */
const OOM_EVENT_GRACE_MS = 2_000;

/**
 * Runtime adapter for one Docker Engine (API 1.41+) through dockerode's modem. Requests
 * are sent with exactly the bodies built by `buildContainerConfig`; images are never
 * pulled (a missing image is an immediate ImageNotFoundError).
 */
export class DockerRuntime implements Runtime {
  readonly driver = 'docker';
  readonly nodeId: string;
  readonly endpoint: DockerEndpoint;
  private readonly modem: DockerModem;
  private readonly httpAgent: HttpAgent;
  private readonly security: ContainerConfigOptions;
  private readonly callTimeoutMs: number;
  private readonly watchReconnectInitialMs: number;
  private readonly watchReconnectMaxMs: number;
  private readonly watchReplayMs: number;
  /** Aborted by close(): ends every watch and log stream this instance opened. */
  private readonly closing = new AbortController();

  constructor(options: DockerRuntimeOptions) {
    this.nodeId = options.nodeId;
    this.endpoint = parseDockerHost(options.dockerHost ?? process.env.DOCKER_HOST);
    this.security = resolveContainerConfigOptions(options.defaultSecurity);
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    this.watchReconnectInitialMs = options.watchReconnectInitialMs ?? 250;
    this.watchReconnectMaxMs = options.watchReconnectMaxMs ?? 5_000;
    this.watchReplayMs = options.watchReplayMs ?? 1_000;
    // No keep-alive: a kept socket whose daemon end went away (daemon restart, proxy)
    // fails the next request with EPIPE/ECONNRESET, and a fresh connection costs
    // microseconds on a unix socket and one round trip on TCP. Our own agent, so close()
    // can end the sockets of open streams.
    this.httpAgent = new HttpAgent({ keepAlive: false });
    // docker-modem util.inspect()s every request's options (debug or not), agent and its
    // sockets included: measured up to ~1 s event-loop stalls under load. Keep it cheap.
    Object.defineProperty(this.httpAgent, inspect.custom, { value: () => '[http.Agent]' });
    // docker-modem merges its own reading of DOCKER_HOST, DOCKER_CERT_PATH and
    // DOCKER_CLIENT_TIMEOUT under these options: every such key is set explicitly (even
    // to undefined) so the endpoint we parsed is the one used.
    const connection = {
      socketPath: this.endpoint.kind === 'unix' ? this.endpoint.socketPath : undefined,
      host: this.endpoint.kind === 'tcp' ? this.endpoint.host : undefined,
      port: this.endpoint.kind === 'tcp' ? this.endpoint.port : undefined,
      protocol: 'http' as const,
      pathPrefix: '/',
      ca: undefined,
      cert: undefined,
      key: undefined,
      timeout: undefined,
      agent: this.httpAgent,
    };
    // `agent` and `pathPrefix` are modem options missing from @types/dockerode.
    const docker = newDockerClient(connection as Docker.DockerOptions);
    this.modem = docker.modem as DockerModem;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.request('ping', { path: '/_ping', method: 'GET', statusCodes: { 200: true } }, signal);
  }

  async info(signal?: AbortSignal): Promise<NodeInfo> {
    const info = await this.request<DockerInfoResponse>('info', { path: '/info', method: 'GET', statusCodes: { 200: true } }, signal);
    const isolationClasses = new Set<string>();
    for (const name of Object.keys(info.Runtimes ?? {})) {
      const isolation = ISOLATION_BY_DOCKER_RUNTIME[name];
      if (isolation !== undefined) isolationClasses.add(isolation);
    }
    return {
      cpuMillicores: (info.NCPU ?? 0) * 1000,
      memoryMiB: Math.floor((info.MemTotal ?? 0) / 2 ** 20),
      os: info.OSType ?? 'unknown',
      arch: info.Architecture ?? 'unknown',
      runtimeVersion: info.ServerVersion ?? 'unknown',
      isolationClasses: [...isolationClasses].sort(),
    };
  }

  async create(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    const { name, body } = buildContainerConfig(spec, this.security);
    for (let attempt = 1; ; attempt++) {
      try {
        const created = await this.request<{ Id: string }>(
          'create',
          {
            path: '/containers/create?',
            method: 'POST',
            options: { _query: { name }, _body: body },
            statusCodes: { 200: true, 201: true },
          },
          signal,
        );
        return created.Id;
      } catch (err) {
        // Checking the create error instead of inspecting the image first keeps create one round trip.
        if (isStatus(err, 404) && /no such image/i.test(err.dockerMessage)) throw new ImageNotFoundError(spec.image, err.dockerMessage);
        if (!isStatus(err, 409)) throw err;
      }
      const existing = await this.inspectRaw(name, signal);
      if (existing === undefined) {
        // The name is taken but nothing answers to it: a concurrent create has reserved
        // the name and not finished yet, or a remove is finishing. Both settle quickly.
        if (attempt < CREATE_CONFLICT_ATTEMPTS) {
          await sleep(20 * 2 ** (attempt - 1), undefined, signal ? { signal } : undefined);
          continue;
        }
        throw new ConflictError('CONTAINER_NAME_TAKEN', `container name "${name}" is in use but the container could not be found`, {
          nodeId: this.nodeId,
          agentId: spec.agentId,
          name,
        });
      }
      const owner = existing.Config?.Labels?.[AGENT_ID_LABEL];
      if (owner !== spec.agentId) {
        throw new ConflictError(
          'CONTAINER_NAME_TAKEN',
          `container name "${name}" on node ${this.nodeId} belongs to ${owner ? `agent ${owner}` : 'a container the platform does not manage'}; remove it first`,
          { nodeId: this.nodeId, agentId: spec.agentId, name, containerId: existing.Id, ownerAgentId: owner },
        );
      }
      return existing.Id;
    }
  }

  async start(containerId: string, signal?: AbortSignal): Promise<void> {
    try {
      // 304: already running.
      await this.request(
        'start',
        { path: `/containers/${encodeURIComponent(containerId)}/start`, method: 'POST', statusCodes: { 204: true, 304: true } },
        signal,
        containerId,
      );
    } catch (err) {
      if (isStatus(err, 404)) throw this.containerNotFound(containerId);
      throw err;
    }
  }

  async stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    const graceSeconds = Math.max(0, Math.ceil(graceMs / 1000));
    try {
      // 304: already stopped.
      await this.request(
        'stop',
        {
          path: `/containers/${encodeURIComponent(containerId)}/stop?`,
          method: 'POST',
          options: { _query: { t: graceSeconds }, _body: {} },
          statusCodes: { 204: true, 304: true },
        },
        signal,
        containerId,
        this.callTimeoutMs + graceSeconds * 1000,
      );
    } catch (err) {
      if (isStatus(err, 404)) return;
      throw err;
    }
  }

  async remove(containerId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.request(
        'remove',
        {
          path: `/containers/${encodeURIComponent(containerId)}?`,
          method: 'DELETE',
          options: { force: true, v: true },
          statusCodes: { 204: true },
        },
        signal,
        containerId,
      );
    } catch (err) {
      if (isStatus(err, 404)) return;
      if (isStatus(err, 409) && /already in progress/i.test(err.dockerMessage)) return;
      throw err;
    }
  }

  /**
   * One GET /containers/{id}/json. The daemon can process a container's exit before its
   * OOM notification and then report OOMKilled false for an OOM kill (seen on cgroup v1,
   * and on v2 with runc here); so for an exit code of 137 without the flag we also ask the
   * daemon's event log (a short in-memory backlog) whether an "oom" event was recorded
   * since the start, waiting up to OOM_EVENT_GRACE_MS after the exit for a late one.
   */
  async inspect(containerId: string, signal?: AbortSignal): Promise<ObservedContainer | undefined> {
    const raw = await this.inspectRaw(containerId, signal);
    if (raw === undefined) return undefined;
    const observed = observedFromInspect(raw);
    if (observed.state === 'exited' && observed.exitCode === 137 && !observed.oomKilled && observed.startedAt !== undefined) {
      observed.oomKilled = await this.oomEventRecorded(raw.Id, observed.startedAt, observed.finishedAt, signal);
    }
    return observed;
  }

  /**
   * One GET /containers/json for the whole node. The list endpoint has no OOMKilled
   * flag, error text or start/finish times: `oomKilled` is false, the times are
   * undefined, and the exit code is parsed from Docker's "Exited (137) ..." status
   * text. Call `inspect` for the detail of one container.
   */
  /** Label filter selecting the containers this installation owns. */
  private ownedLabelFilter(): string[] {
    const filter = [`${MANAGED_LABEL}=true`];
    if (this.security.instanceId) filter.push(`${INSTANCE_LABEL}=${this.security.instanceId}`);
    return filter;
  }

  async list(signal?: AbortSignal): Promise<ObservedContainer[]> {
    const entries = await this.request<DockerListEntry[]>(
      'list',
      {
        path: '/containers/json?',
        method: 'GET',
        options: { all: true, filters: { label: this.ownedLabelFilter() } },
        statusCodes: { 200: true },
      },
      signal,
    );
    return entries.map(observedFromListEntry);
  }

  /**
   * Subscribes to the daemon's container events for managed containers. The first
   * subscription reaches back `watchReplayMs`; after a dropped connection it resumes
   * from the last event seen (Docker keeps a short in-memory backlog), with backoff
   * from `watchReconnectInitialMs` doubling to `watchReconnectMaxMs`. Delivery is
   * at-least-once and may repeat an event around a reconnect. Exceptions thrown by
   * onEvent are swallowed: the watch outlives a buggy consumer.
   */
  watch(onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): void {
    void this.watchLoop(onEvent, AbortSignal.any([signal, this.closing.signal]));
  }

  /**
   * Lines of stdout and stderr, in the order the daemon sends them. With `follow`
   * the iteration lasts until the container stops or the signal aborts; an abort ends
   * the iteration quietly. Throws NotFoundError when the container does not exist.
   */
  async *logs(containerId: string, options: LogOptions, signal?: AbortSignal): AsyncGenerator<LogLine> {
    const stream = linkSignals(signal, this.closing.signal);
    try {
      yield* this.logLines(containerId, options, signal, stream.signal);
    } finally {
      stream.dispose();
    }
  }

  private async *logLines(containerId: string, options: LogOptions, signal: AbortSignal | undefined, streamSignal: AbortSignal): AsyncGenerator<LogLine> {
    const query: Record<string, string | boolean> = {
      stdout: true,
      stderr: true,
      timestamps: true,
      follow: options.follow === true,
      tail: options.tail === undefined ? 'all' : String(Math.max(0, Math.floor(options.tail))),
    };
    if (options.sinceMs !== undefined) query.since = dockerSinceParam(options.sinceMs);
    const context = this.context('logs', containerId);

    let response: IncomingMessage;
    try {
      response = await this.openStream(
        context,
        { path: `/containers/${encodeURIComponent(containerId)}/logs?`, method: 'GET', options: query, statusCodes: { 200: true } },
        streamSignal,
      );
    } catch (err) {
      if (streamSignal.aborted) return;
      if (isStatus(err, 404)) throw this.containerNotFound(containerId);
      throw err;
    }

    const destroy = (): void => {
      response.destroy();
    };
    streamSignal.addEventListener('abort', destroy, { once: true });
    const sinceMs = options.sinceMs;
    const wanted = (line: LogLine): boolean => sinceMs === undefined || line.time >= sinceMs;
    try {
      const decoder = new DockerLogDecoder();
      try {
        for await (const chunk of response as AsyncIterable<Buffer>) {
          for (const line of decoder.push(chunk)) if (wanted(line)) yield line;
        }
      } catch (err) {
        if (streamSignal.aborted) return;
        throw toRuntimeError(err, context, signal, false);
      }
      if (streamSignal.aborted) return;
      for (const line of decoder.end()) if (wanted(line)) yield line;
    } finally {
      streamSignal.removeEventListener('abort', destroy);
      response.destroy();
    }
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.httpAgent.destroy();
  }

  private async watchLoop(onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): Promise<void> {
    let resumeFromMs = Date.now() - this.watchReplayMs;
    let backoffMs = this.watchReconnectInitialMs;
    const context = this.context('events');
    while (!signal.aborted) {
      try {
        const response = await this.openStream(
          context,
          {
            path: '/events?',
            method: 'GET',
            options: {
              since: dockerSinceParam(resumeFromMs),
              filters: { type: ['container'], label: this.ownedLabelFilter() },
            },
            statusCodes: { 200: true },
          },
          signal,
        );
        backoffMs = this.watchReconnectInitialMs;
        const destroy = (): void => {
          response.destroy();
        };
        signal.addEventListener('abort', destroy, { once: true });
        try {
          const splitter = new JsonLineSplitter();
          for await (const chunk of response as AsyncIterable<Buffer>) {
            for (const message of splitter.push(chunk)) {
              const event = parseDockerEvent(message);
              if (event === undefined) continue;
              resumeFromMs = Math.max(resumeFromMs, event.time);
              try {
                onEvent(event);
              } catch {
                // The consumer's bug must not end the watch for everybody else.
              }
            }
          }
        } finally {
          signal.removeEventListener('abort', destroy);
          response.destroy();
        }
      } catch {
        // Daemon down, restarted or the connection dropped: reconnect below.
      }
      if (signal.aborted) return;
      try {
        await sleep(backoffMs, undefined, { signal });
      } catch {
        return;
      }
      backoffMs = Math.min(this.watchReconnectMaxMs, backoffMs * 2);
    }
  }

  private async oomEventRecorded(containerId: string, sinceMs: number, exitedAtMs: number | undefined, signal?: AbortSignal): Promise<boolean> {
    const deadline = AbortSignal.timeout(this.callTimeoutMs);
    const read = linkSignals(signal, deadline);
    try {
      return await this.oomEventIn(containerId, sinceMs, exitedAtMs, signal, deadline, read.signal);
    } finally {
      read.dispose();
    }
  }

  private async oomEventIn(containerId: string, sinceMs: number, exitedAtMs: number | undefined, signal: AbortSignal | undefined, deadline: AbortSignal, readSignal: AbortSignal): Promise<boolean> {
    const response = await this.openStream(
      this.context('events', containerId),
      {
        path: '/events?',
        method: 'GET',
        options: {
          since: dockerSinceParam(sinceMs),
          // A future "until" keeps the stream open until then; an "oom" event ends it at once.
          until: dockerSinceParam(Math.max(Date.now(), (exitedAtMs ?? 0) + OOM_EVENT_GRACE_MS)),
          filters: { type: ['container'], container: [containerId], event: ['oom'] },
        },
        statusCodes: { 200: true },
      },
      readSignal,
    );
    const destroy = (): void => {
      response.destroy();
    };
    readSignal.addEventListener('abort', destroy, { once: true });
    try {
      const splitter = new JsonLineSplitter();
      for await (const chunk of response as AsyncIterable<Buffer>) {
        if (splitter.push(chunk).some((message) => parseDockerEvent(message)?.action === 'oom')) return true;
      }
      return false;
    } catch (err) {
      throw toRuntimeError(err, this.context('events', containerId), signal, deadline.aborted);
    } finally {
      readSignal.removeEventListener('abort', destroy);
      response.destroy();
    }
  }

  private async inspectRaw(containerIdOrName: string, signal?: AbortSignal): Promise<DockerInspectResponse | undefined> {
    try {
      return await this.request<DockerInspectResponse>(
        'inspect',
        { path: `/containers/${encodeURIComponent(containerIdOrName)}/json`, method: 'GET', statusCodes: { 200: true } },
        signal,
        containerIdOrName,
      );
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** One request/response call with the per-call deadline; errors become runtime errors. */
  private request<T = unknown>(
    operation: string,
    dial: DialOptions,
    signal: AbortSignal | undefined,
    containerId?: string,
    timeoutMs = this.callTimeoutMs,
  ): Promise<T> {
    const deadline = AbortSignal.timeout(timeoutMs);
    const call = linkSignals(signal, deadline);
    return new Promise<T>((resolve, reject) => {
      this.modem.dial({ ...dial, abortSignal: call.signal }, (err, data) => {
        call.dispose();
        if (err) reject(toRuntimeError(err, this.context(operation, containerId), signal, deadline.aborted));
        else resolve(data as T);
      });
    });
  }

  /**
   * Opens a streaming response. The deadline covers only the wait for the response
   * headers; afterwards only the signal ends the stream.
   */
  private openStream(context: DockerCallContext, dial: DialOptions, signal: AbortSignal): Promise<IncomingMessage> {
    const controller = new AbortController();
    let timedOut = false;
    const forward = (): void => controller.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener('abort', forward, { once: true });
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.callTimeoutMs);
    return new Promise<IncomingMessage>((resolve, reject) => {
      this.modem.dial({ ...dial, isStream: true, abortSignal: controller.signal }, (err, data) => {
        clearTimeout(timer);
        if (err) {
          signal.removeEventListener('abort', forward);
          reject(toRuntimeError(err, context, signal, timedOut));
          return;
        }
        const response = data as IncomingMessage;
        const release = (): void => signal.removeEventListener('abort', forward);
        response.once('close', release);
        resolve(response);
      });
    });
  }

  private context(operation: string, containerId?: string): DockerCallContext {
    return { operation, nodeId: this.nodeId, endpoint: formatDockerEndpoint(this.endpoint), containerId };
  }

  private containerNotFound(containerId: string): NotFoundError {
    return new NotFoundError('CONTAINER_NOT_FOUND', `container ${containerId} does not exist on node ${this.nodeId}`, {
      nodeId: this.nodeId,
      containerId,
    });
  }
}
