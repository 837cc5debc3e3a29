import { StringDecoder } from 'node:string_decoder';
import { AGENT_ID_LABEL, type RuntimeEvent } from '../runtime.js';

const ACTIONS: ReadonlySet<string> = new Set<RuntimeEvent['action']>(['start', 'die', 'oom', 'destroy', 'create', 'stop']);

/** The fields of a Docker Engine event message we read. */
interface DockerEventMessage {
  Type?: string;
  Action?: string;
  /** Pre-1.22 name of Action; older daemons still send it. */
  status?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
  timeNano?: number;
}

/**
 * Normalises one Docker event into a RuntimeEvent, or undefined for events the
 * platform does not act on (exec_*, attach, kill, resize, health_status, ...) and
 * for anything malformed. Never throws.
 */
export function parseDockerEvent(message: unknown): RuntimeEvent | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const m = message as DockerEventMessage;
  if (m.Type !== undefined && m.Type !== 'container') return undefined;
  const action = m.Action ?? m.status;
  if (typeof action !== 'string' || !ACTIONS.has(action)) return undefined;
  const containerId = m.Actor?.ID ?? m.id;
  if (typeof containerId !== 'string' || containerId === '') return undefined;
  const time =
    typeof m.timeNano === 'number' ? Math.floor(m.timeNano / 1e6) : typeof m.time === 'number' ? m.time * 1000 : Date.now();
  return {
    action: action as RuntimeEvent['action'],
    containerId,
    agentId: m.Actor?.Attributes?.[AGENT_ID_LABEL] ?? '',
    time,
  };
}

/**
 * Splits Docker's /events body (one JSON document per line) into parsed values,
 * keeping a partial line across chunks. Lines that are not JSON are dropped: one bad
 * line must not end the watch.
 */
export class JsonLineSplitter {
  private partial = '';
  private readonly decoder = new StringDecoder('utf8');

  push(chunk: Buffer | string): unknown[] {
    const text = this.partial + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    const values: unknown[] = [];
    for (const line of lines) {
      const value = parseJsonLine(line);
      if (value !== undefined) values.push(value);
    }
    return values;
  }
}

function parseJsonLine(line: string): unknown {
  const trimmed = line.trim();
  if (trimmed === '') return undefined;
  try {
    return JSON.parse(trimmed) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Docker's `since` query value for an ms epoch: seconds with a nanosecond fraction,
 * which /events and /logs both accept.
 */
export const dockerSinceParam = (timeMs: number): string => {
  const whole = Math.floor(timeMs);
  return `${Math.floor(whole / 1000)}.${String(whole % 1000).padStart(3, '0')}000000`;
};
