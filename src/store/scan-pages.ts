/**
 * The pages of an id-ordered pass (Store.scanAgents, scanAgentHeads), one after another
 * until the pass is complete. `page` is called with the previous page's nextAfterId. Checks
 * `signal` before each page.
 */
export async function* scanPages<T>(
  page: (afterId: string | undefined) => Promise<{ items: T[]; nextAfterId?: string | undefined }>,
  signal?: AbortSignal,
): AsyncGenerator<T[]> {
  let afterId: string | undefined;
  do {
    signal?.throwIfAborted();
    const next = await page(afterId);
    yield next.items;
    afterId = next.nextAfterId;
  } while (afterId !== undefined);
}
