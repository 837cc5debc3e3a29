/** AbortSignal.any for one operation, with a dispose() to call when the operation ends. */
export interface LinkedSignal {
  readonly signal: AbortSignal;
  /** Unhooks the sources; idempotent. The signal keeps its state. */
  dispose(): void;
}

const noop = (): void => undefined;

/**
 * A signal that aborts when any of `sources` aborts, with its reason.
 *
 * Not AbortSignal.any: Node (20.20 here; nodejs/node#55351) keeps a WeakRef to every signal
 * AbortSignal.any returns inside each source until that source aborts. The controller's
 * signal lives as long as its leadership and a runtime's "closing" signal as long as the
 * runtime, so one AbortSignal.any per runtime call grew the heap by about 140 bytes per call
 * for the life of the process. Here each source gets a listener, and dispose() removes them.
 */
export function linkSignals(...sources: (AbortSignal | undefined)[]): LinkedSignal {
  const present = sources.filter((s): s is AbortSignal => s !== undefined);
  if (present.length === 1) return { signal: present[0]!, dispose: noop };
  if (present.length === 0) return { signal: new AbortController().signal, dispose: noop };
  const already = present.find((s) => s.aborted);
  if (already) return { signal: AbortSignal.abort(already.reason), dispose: noop };
  const controller = new AbortController();
  const unhooks: (() => void)[] = [];
  const dispose = (): void => {
    for (const unhook of unhooks.splice(0)) unhook();
  };
  for (const source of present) {
    const onAbort = (): void => {
      dispose();
      controller.abort(source.reason);
    };
    source.addEventListener('abort', onAbort, { once: true });
    unhooks.push(() => source.removeEventListener('abort', onAbort));
  }
  return { signal: controller.signal, dispose };
}
