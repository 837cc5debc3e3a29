import { describe, it, expect } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { Spinner } from './spinner.js';

const stream = (isTTY: boolean) => {
  const chunks: string[] = [];
  return { chunks, isTTY, write: (c: string | Uint8Array) => (chunks.push(String(c)), true) };
};

describe('Spinner', () => {
  it('writes nothing when the stream is not a TTY', async () => {
    const s = stream(false);
    const spinner = new Spinner(s, 5);
    spinner.start('waiting');
    await sleep(30);
    spinner.stop();
    expect(s.chunks).toEqual([]);
  });

  it('redraws the current text on a TTY and clears the line on stop', async () => {
    const s = stream(true);
    const spinner = new Spinner(s, 5);
    spinner.start('first');
    spinner.update('second');
    await sleep(40);
    spinner.stop();
    spinner.stop();
    expect(s.chunks[0]).toMatch(/^\r\x1b\[2K. first$/);
    expect(s.chunks.some((c) => c.endsWith(' second'))).toBe(true);
    expect(s.chunks.at(-1)).toBe('\r\x1b[2K');
    expect(s.chunks.filter((c) => c === '\r\x1b[2K')).toHaveLength(1);
  });
});
