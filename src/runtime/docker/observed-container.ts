import { AGENT_ID_LABEL, NETWORK_MODE_LABEL, type ContainerState, type ObservedContainer } from '../runtime.js';

const STATES: ReadonlySet<string> = new Set<ContainerState>(['created', 'running', 'exited', 'dead', 'paused', 'restarting', 'removing']);

/** The fields of GET /containers/{id}/json we read. */
export interface DockerInspectResponse {
  Id: string;
  State?: {
    Status?: string;
    ExitCode?: number;
    OOMKilled?: boolean;
    Error?: string;
    StartedAt?: string;
    FinishedAt?: string;
  };
  Config?: { Labels?: Record<string, string> | null };
}

/** The fields of one GET /containers/json entry we read. */
export interface DockerListEntry {
  Id: string;
  State?: string;
  /** Human text, e.g. "Exited (137) 5 seconds ago", "Up 2 minutes". */
  Status?: string;
  Labels?: Record<string, string> | null;
}

const toState = (status: string | undefined): ContainerState =>
  status !== undefined && STATES.has(status) ? (status as ContainerState) : 'dead';

/** Docker reports "0001-01-01T00:00:00Z" for a time that never happened. */
export function dockerTimeToMs(value: string | undefined): number | undefined {
  if (value === undefined || value === '' || value.startsWith('0001-01-01')) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) || ms <= 0 ? undefined : ms;
}

const hasEnded = (state: ContainerState): boolean => state === 'exited' || state === 'dead';

const NETWORK_MODES: ReadonlySet<string> = new Set(['none', 'allowlist', 'open']);
const networkModeOf = (labels: Record<string, string> | null | undefined): ObservedContainer['networkMode'] => {
  const mode = labels?.[NETWORK_MODE_LABEL];
  return mode !== undefined && NETWORK_MODES.has(mode) ? (mode as ObservedContainer['networkMode']) : undefined;
};

/**
 * Maps an inspect response. exitCode and finishedAt are reported only for ended
 * containers: Docker keeps the previous run's values while a restarted container runs,
 * and those would read as "this run ended".
 */
export function observedFromInspect(inspect: DockerInspectResponse): ObservedContainer {
  const state = toState(inspect.State?.Status);
  const ended = hasEnded(state);
  const error = inspect.State?.Error;
  return {
    containerId: inspect.Id,
    agentId: inspect.Config?.Labels?.[AGENT_ID_LABEL] ?? '',
    state,
    exitCode: ended ? inspect.State?.ExitCode : undefined,
    oomKilled: inspect.State?.OOMKilled === true,
    error: error === undefined || error === '' ? undefined : error,
    startedAt: dockerTimeToMs(inspect.State?.StartedAt),
    finishedAt: ended ? dockerTimeToMs(inspect.State?.FinishedAt) : undefined,
    networkMode: networkModeOf(inspect.Config?.Labels),
  };
}

/**
 * Maps a list entry. The list endpoint is cheap (one call for the whole node) but
 * thin: it has no OOMKilled flag, no error text and no start/finish times, so
 * `oomKilled` is always false and the times are undefined; the exit code is parsed
 * from the human Status text ("Exited (137) ..."). A reconciler that needs the detail
 * (say, to tell an OOM kill from another SIGKILL) calls inspect for that container.
 */
export function observedFromListEntry(entry: DockerListEntry): ObservedContainer {
  const state = toState(entry.State);
  const exitMatch = /^Exited \((-?\d+)\)/.exec(entry.Status ?? '');
  return {
    containerId: entry.Id,
    agentId: entry.Labels?.[AGENT_ID_LABEL] ?? '',
    state,
    exitCode: hasEnded(state) && exitMatch ? Number(exitMatch[1]) : undefined,
    oomKilled: false,
    error: undefined,
    startedAt: undefined,
    finishedAt: undefined,
    networkMode: networkModeOf(entry.Labels),
  };
}
