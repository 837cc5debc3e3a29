import { StringDecoder } from 'node:string_decoder';
import type { LogLine } from '../runtime.js';

const HEADER_BYTES = 8;
const STREAM_BY_TYPE: Record<number, LogLine['stream'] | undefined> = { 1: 'stdout', 2: 'stderr' };

/**
 * Parses the RFC3339Nano timestamp Docker prefixes to each log line
 * ("2024-05-01T12:34:56.123456789Z"). Returns ms epoch, or undefined when the text
 * is not such a timestamp. Sub-millisecond digits are dropped (not rounded), so a
 * line never appears to be later than it was.
 */
export function parseDockerTimestampMs(text: string): number | undefined {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  if (!match) return undefined;
  const fraction = (match[2] ?? '').slice(0, 3).padEnd(3, '0');
  const ms = Date.parse(`${match[1]}.${fraction}${match[3]}`);
  return Number.isNaN(ms) ? undefined : ms;
}

/** Splits "TIMESTAMP text" as Docker writes it with timestamps=true. */
export function parseTimestampedLine(stream: LogLine['stream'], raw: string): LogLine {
  const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  const space = line.indexOf(' ');
  const time = parseDockerTimestampMs(space === -1 ? line : line.slice(0, space));
  if (time === undefined) {
    // Only reachable if Docker stops prefixing timestamps; keep the text whole.
    return { stream, time: Date.now(), text: line };
  }
  return { stream, time, text: space === -1 ? '' : line.slice(space + 1) };
}

/**
 * Incremental decoder for Docker's multiplexed log stream (containers without a TTY):
 * frames of an 8-byte header (byte 0: stream type 1 = stdout, 2 = stderr; bytes 4-7:
 * payload length, big-endian) followed by the payload. Frames may be split across
 * chunks and lines across frames, so both the frame and, per stream, the partial line
 * and any partial UTF-8 sequence are carried over to the next `push`.
 */
export class DockerLogDecoder {
  private pending: Buffer = Buffer.alloc(0);
  private readonly decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  private readonly partial = { stdout: '', stderr: '' };

  /** Feeds one chunk; returns the complete lines it finished, in stream order. */
  push(chunk: Buffer): LogLine[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const lines: LogLine[] = [];
    let offset = 0;
    while (this.pending.length - offset >= HEADER_BYTES) {
      const type = this.pending[offset]!;
      const length = this.pending.readUInt32BE(offset + 4);
      if (this.pending.length - offset - HEADER_BYTES < length) break;
      const payload = this.pending.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length);
      offset += HEADER_BYTES + length;
      const stream = STREAM_BY_TYPE[type];
      // Type 0 (stdin) and 3 (daemon error) never carry container output here.
      if (stream === undefined) continue;
      this.appendText(stream, this.decoders[stream].write(payload), lines);
    }
    this.pending = offset === 0 ? this.pending : this.pending.subarray(offset);
    return lines;
  }

  /** Flushes lines that did not end in a newline (the stream ended). */
  end(): LogLine[] {
    const lines: LogLine[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const rest = this.partial[stream] + this.decoders[stream].end();
      this.partial[stream] = '';
      if (rest !== '') lines.push(parseTimestampedLine(stream, rest));
    }
    this.pending = Buffer.alloc(0);
    return lines;
  }

  private appendText(stream: LogLine['stream'], text: string, out: LogLine[]): void {
    const parts = (this.partial[stream] + text).split('\n');
    this.partial[stream] = parts.pop() ?? '';
    for (const part of parts) out.push(parseTimestampedLine(stream, part));
  }
}

/** Decodes a whole multiplexed stream into LogLines. */
export async function* decodeDockerLogStream(source: AsyncIterable<Buffer>): AsyncGenerator<LogLine> {
  const decoder = new DockerLogDecoder();
  for await (const chunk of source) yield* decoder.push(chunk);
  yield* decoder.end();
}

/** Encodes one frame (tests and fakes of the daemon's wire format). */
export function encodeDockerLogFrame(stream: LogLine['stream'], payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = stream === 'stdout' ? 1 : 2;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}
