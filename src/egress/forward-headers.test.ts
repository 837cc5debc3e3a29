import { describe, expect, it } from 'vitest';
import { forwardHeaders } from './forward-headers.js';

describe('forwardHeaders', () => {
  it('drops hop-by-hop headers and those named in Connection, keeping order and case', () => {
    const raw = ['Host', 'a.example', 'Connection', 'keep-alive, X-Secret', 'Proxy-Authorization', 'Basic x', 'X-Secret', 's', 'Accept', '*/*', 'Upgrade', 'h2c', 'Transfer-Encoding', 'chunked'];
    expect(forwardHeaders(raw)).toEqual(['Host', 'a.example', 'Accept', '*/*', 'Transfer-Encoding', 'chunked']);
    expect(forwardHeaders(raw, ['transfer-encoding'])).toEqual(['Host', 'a.example', 'Accept', '*/*']);
  });
});
