/** One Server-Sent Events message, as the WHATWG event-stream format defines it. */
export interface SseFrame {
  /** The `id:` field of this frame, when it had one (the stream's last event id is the caller's to track). */
  id?: string | undefined;
  /** The `event:` field; "message" when absent. */
  event: string;
  /** `data:` lines joined with "\n". */
  data: string;
}

/**
 * Parses an event stream (text/event-stream) chunk by chunk into frames. Comments
 * (": keep-alive") and frames without data are skipped, as EventSource does; CRLF, CR
 * and LF line ends all work, and a chunk may end mid-line or mid-character.
 */
export async function* sseFrames(chunks: AsyncIterable<Uint8Array | string>): AsyncGenerator<SseFrame> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  /** Handles one line; returns a frame when the line (an empty one) completes it. */
  const line = (text: string): SseFrame | undefined => {
    if (text === '') {
      const frame = data.length > 0 ? { ...(id !== undefined ? { id } : {}), event: event || 'message', data: data.join('\n') } : undefined;
      data = [];
      event = '';
      id = undefined;
      return frame;
    }
    if (text.startsWith(':')) return undefined;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
    return undefined;
  };
  for await (const chunk of chunks) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    for (;;) {
      const end = /\r\n|\r|\n/.exec(buffer);
      // A lone CR at the end may be the first half of a CRLF: wait for the next chunk.
      if (!end || (end[0] === '\r' && end.index === buffer.length - 1)) break;
      const frame = line(buffer.slice(0, end.index));
      buffer = buffer.slice(end.index + end[0].length);
      if (frame) yield frame;
    }
  }
  // The stream ended: a CR held back above was a line end after all.
  if (buffer.endsWith('\r')) {
    const frame = line(buffer.slice(0, -1));
    if (frame) yield frame;
  }
}
