import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LogLine } from '../runtime.js';
import { DockerLogDecoder, decodeDockerLogStream, encodeDockerLogFrame, parseDockerTimestampMs, parseTimestampedLine } from './docker-logs.js';

const T1 = '2024-05-01T12:34:56.123456789Z';
const T1_MS = Date.UTC(2024, 4, 1, 12, 34, 56, 123);

describe('parseDockerTimestampMs', () => {
  it('parses RFC3339Nano, truncating below the millisecond', () => {
    expect(parseDockerTimestampMs(T1)).toBe(T1_MS);
    expect(parseDockerTimestampMs('2024-05-01T12:34:56.999999999Z')).toBe(Date.UTC(2024, 4, 1, 12, 34, 56, 999));
    expect(parseDockerTimestampMs('2024-05-01T12:34:56Z')).toBe(Date.UTC(2024, 4, 1, 12, 34, 56));
    expect(parseDockerTimestampMs('2024-05-01T12:34:56.5Z')).toBe(Date.UTC(2024, 4, 1, 12, 34, 56, 500));
    expect(parseDockerTimestampMs('2024-05-01T14:34:56.123+02:00')).toBe(T1_MS);
  });

  it('rejects what is not a timestamp', () => {
    expect(parseDockerTimestampMs('hello')).toBeUndefined();
    expect(parseDockerTimestampMs('2024-05-01')).toBeUndefined();
    expect(parseDockerTimestampMs('')).toBeUndefined();
  });
});

describe('parseTimestampedLine', () => {
  it('splits timestamp and text, keeping spaces in the text', () => {
    expect(parseTimestampedLine('stdout', `${T1}  two spaces `)).toEqual({ stream: 'stdout', time: T1_MS, text: ' two spaces ' });
    expect(parseTimestampedLine('stderr', `${T1} `)).toEqual({ stream: 'stderr', time: T1_MS, text: '' });
    expect(parseTimestampedLine('stderr', `${T1} crlf\r`)).toEqual({ stream: 'stderr', time: T1_MS, text: 'crlf' });
  });
});

describe('DockerLogDecoder', () => {
  const frames = Buffer.concat([
    encodeDockerLogFrame('stdout', `${T1} out one\n${T1} out `),
    encodeDockerLogFrame('stderr', `${T1} err one\n`),
    encodeDockerLogFrame('stdout', `two\n`),
    encodeDockerLogFrame('stdout', `${T1} h\u00e9llo \u{1F600}\n`),
  ]);
  const expected: LogLine[] = [
    { stream: 'stdout', time: T1_MS, text: 'out one' },
    { stream: 'stderr', time: T1_MS, text: 'err one' },
    { stream: 'stdout', time: T1_MS, text: 'out two' },
    { stream: 'stdout', time: T1_MS, text: 'h\u00e9llo \u{1F600}' },
  ];

  it('decodes whole frames, joining a line split across frames of its stream', () => {
    const decoder = new DockerLogDecoder();
    expect([...decoder.push(frames), ...decoder.end()]).toEqual(expected);
  });

  it('gives the same lines however the bytes are chunked', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: frames.length - 1 }), { maxLength: 20 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const decoder = new DockerLogDecoder();
        const lines: LogLine[] = [];
        let from = 0;
        for (const point of [...points, frames.length]) {
          lines.push(...decoder.push(frames.subarray(from, point)));
          from = point;
        }
        lines.push(...decoder.end());
        expect(lines).toEqual(expected);
      }),
    );
  });

  it('holds back an unfinished line until end()', () => {
    const decoder = new DockerLogDecoder();
    expect(decoder.push(encodeDockerLogFrame('stdout', `${T1} no newline`))).toEqual([]);
    expect(decoder.end()).toEqual([{ stream: 'stdout', time: T1_MS, text: 'no newline' }]);
  });

  it('ignores stdin and daemon-error frames', () => {
    const other = Buffer.from(encodeDockerLogFrame('stdout', `${T1} x\n`));
    other[0] = 0;
    const decoder = new DockerLogDecoder();
    expect(decoder.push(Buffer.concat([other, encodeDockerLogFrame('stderr', `${T1} y\n`)]))).toEqual([
      { stream: 'stderr', time: T1_MS, text: 'y' },
    ]);
  });
});

describe('decodeDockerLogStream', () => {
  it('decodes an async stream of chunks', async () => {
    async function* source(): AsyncGenerator<Buffer> {
      yield encodeDockerLogFrame('stdout', `${T1} a\n${T1} b`);
      yield encodeDockerLogFrame('stdout', `\n`);
    }
    const lines: string[] = [];
    for await (const line of decodeDockerLogStream(source())) lines.push(line.text);
    expect(lines).toEqual(['a', 'b']);
  });
});
