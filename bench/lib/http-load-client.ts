/**
 * A closed-loop HTTP load generator, meant to run in a child process of its own (fork)
 * so that its CPU does not come out of the server's event loop (two cores here: one
 * for the server, one for the client).
 *
 * The parent sends one LoadRequest over IPC; the child POSTs `count` JSON bodies with
 * `concurrency` requests in flight over keep-alive connections (node:http Agent, one
 * socket per in-flight request), then answers with a LoadResult and exits.
 *
 * Times are epoch milliseconds with sub-ms precision (performance.timeOrigin + now()),
 * so they can be compared with times taken in the parent process on the same machine.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

/** What the parent asks for. */
export interface LoadRequest {
  type: 'run';
  /** e.g. http://127.0.0.1:3000 */
  baseUrl: string;
  path: string;
  token: string;
  count: number;
  concurrency: number;
  /** Body i is this template with `name` set to `${namePrefix}-${i}`. */
  bodyTemplate: Record<string, unknown>;
  namePrefix: string;
}

/** What the child reports. Arrays are indexed by request number i. */
export interface LoadResult {
  type: 'result';
  /** When request i was sent (epoch ms). */
  sentAtMs: number[];
  /** When its response was complete (epoch ms). */
  ackedAtMs: number[];
  /** The `id` field of the response body, or '' when there was none. */
  ids: string[];
  /** Responses that were not 2xx, by status, with the first body of each status. */
  failures: Record<string, { count: number; firstBody: string }>;
}

/** Epoch milliseconds with sub-millisecond precision. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

/** Runs the load described by `req` in this process (also usable without fork). */
export async function runHttpLoad(req: Omit<LoadRequest, 'type'>): Promise<LoadResult> {
  const url = new URL(req.path, req.baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: req.concurrency, maxFreeSockets: req.concurrency });
  const sentAtMs = new Array<number>(req.count).fill(0);
  const ackedAtMs = new Array<number>(req.count).fill(0);
  const ids = new Array<string>(req.count).fill('');
  const failures: LoadResult['failures'] = {};
  let next = 0;

  const one = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ ...req.bodyTemplate, name: `${req.namePrefix}-${i}` });
      sentAtMs[i] = epochMs();
      const r = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${req.token}` },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            ackedAtMs[i] = epochMs();
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              // The id is the first field the API writes; a full parse costs the client ~10%.
              const m = /"id":"([^"]+)"/.exec(text);
              ids[i] = m?.[1] ?? '';
            } else {
              const f = (failures[String(status)] ??= { count: 0, firstBody: text.slice(0, 500) });
              f.count++;
            }
            resolve();
          });
          res.on('error', reject);
        },
      );
      r.on('error', reject);
      r.end(body);
    });

  const worker = async (): Promise<void> => {
    while (next < req.count) {
      const i = next++;
      await one(i);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(req.concurrency, req.count) }, worker));
  } finally {
    agent.destroy();
  }
  return { type: 'result', sentAtMs, ackedAtMs, ids, failures };
}

// Forked with an IPC channel: serve exactly one request, then exit.
if (process.send && process.argv.includes('--http-load-child')) {
  process.once('message', (msg: LoadRequest) => {
    runHttpLoad(msg).then(
      (result) => process.send!(result, () => process.exit(0)),
      (err: unknown) => {
        console.error('http load client failed:', err);
        process.exit(1);
      },
    );
  });
}
