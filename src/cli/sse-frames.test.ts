import { describe, expect, it } from 'vitest';
import { sseFrames, type SseFrame } from './sse-frames.js';

async function parse(chunks: (string | Uint8Array)[]): Promise<SseFrame[]> {
  const out: SseFrame[] = [];
  for await (const f of sseFrames((async function* () {
    yield* chunks;
  })())) out.push(f);
  return out;
}

describe('sseFrames', () => {
  it('parses id, event and data, skipping comments', async () => {
    const frames = await parse([': connected\n\nid: 7\nevent: agent\ndata: {"a":1}\n\n: keep-alive\n\n']);
    expect(frames).toEqual([{ id: '7', event: 'agent', data: '{"a":1}' }]);
  });

  it('joins data lines and defaults the event name to "message"', async () => {
    expect(await parse(['data: one\ndata:two\n\n'])).toEqual([{ event: 'message', data: 'one\ntwo' }]);
  });

  it('handles frames split across chunks, mid-line and mid-character, and CRLF line ends', async () => {
    const bytes = Buffer.from('id: 1\r\ndata: héllo\r\n\r\nid: 2\rdata: x\r\r', 'utf8');
    const split = bytes.indexOf(Buffer.from('é')) + 1; // inside the two-byte é
    const crlf = bytes.indexOf(Buffer.from('\r\n')) + 1; // between CR and LF
    const frames = await parse([bytes.subarray(0, crlf), bytes.subarray(crlf, split), bytes.subarray(split)]);
    expect(frames).toEqual([
      { id: '1', event: 'message', data: 'héllo' },
      { id: '2', event: 'message', data: 'x' },
    ]);
  });

  it('drops a frame without data and an unterminated last frame', async () => {
    expect(await parse(['id: 3\nevent: agent\n\ndata: cut off'])).toEqual([]);
  });

  it('does not carry an id over to the next frame', async () => {
    expect(await parse(['id: 4\ndata: a\n\ndata: b\n\n'])).toEqual([
      { id: '4', event: 'message', data: 'a' },
      { event: 'message', data: 'b' },
    ]);
  });
});
