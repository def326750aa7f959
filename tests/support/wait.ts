/**
 * Waiting on a condition instead of sleeping and assuming: tests poll what they expect,
 * with a generous deadline, so a slow machine makes them slower, never red.
 * @module
 */

/** Polls until `ok()` or the deadline; returns how long it took (ms), throws on timeout. */
export async function within(
  ms: number,
  what: string,
  ok: () => Promise<boolean> | boolean,
): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await ok()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}
