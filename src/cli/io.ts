/** The bit of a writable stream agentctl needs; process.stdout fits, so does a test buffer. */
export interface OutputStream {
  write(chunk: string | Uint8Array): boolean;
  isTTY?: boolean | undefined;
  once?(event: 'drain', listener: () => void): unknown;
}

/** Everything the CLI touches of the outside world, so tests can run it in-process. */
export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  env: Readonly<Record<string, string | undefined>>;
  /** Read by `create -f -`. */
  stdin?: AsyncIterable<Uint8Array | string> | undefined;
  /** Aborts long operations (logs -f, wait) on Ctrl-C. */
  signal?: AbortSignal | undefined;
  /** @default Date.now */
  now?: (() => number) | undefined;
}

/** Writes and waits for 'drain' when the stream is full, so `logs` of a big agent does not buffer it all. */
export async function writeWithBackpressure(stream: OutputStream, chunk: string | Uint8Array): Promise<void> {
  if (stream.write(chunk) || !stream.once) return;
  await new Promise<void>((resolve) => stream.once!('drain', resolve));
}
