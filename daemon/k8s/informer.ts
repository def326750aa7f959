/**
 * List-then-watch, kept going: the reflector loop of client-go, small.
 *
 * - List, remember the list's resourceVersion, watch from it with bookmarks; every event
 *   and bookmark advances the resourceVersion, so when the server ends a watch (its
 *   timeout) the next one resumes exactly there, without a relist.
 * - `410 Gone` (the resourceVersion was compacted away) → list again at once. The new
 *   list is compared with what was known, and the differences come out as ordinary
 *   events: a Node deleted during the gap is still reported as `deleted`.
 * - Other failures (API server down, a broken or silent stream, 403) → wait and resume
 *   the watch from the last resourceVersion: the server's `Retry-After` when it gave one
 *   (429), else an exponential back-off (500 ms → 30 s) with ±25 % jitter, so agents that
 *   lost the API server together do not come back in step.
 *
 * @example
 * ```ts ignore
 * for await (const e of inform<Node>(client, { path: "/api/v1/nodes", signal })) {
 *   if (e.type === "deleted") await ipam.releaseNode(e.object.metadata.name);
 * }
 * ```
 * @module
 */

import { KubeApiError, type KubeClient, KubeGoneError, type KubeObject } from "./client.ts";

export type InformerEvent<T> =
  | { type: "added" | "modified" | "deleted"; object: T; resourceVersion: string }
  /** After every (re)list: the whole set as it is now (events for the differences came first). */
  | { type: "synced"; objects: T[]; resourceVersion: string }
  /** The server's progress mark (the next watch resumes from here). */
  | { type: "bookmark"; resourceVersion: string };

export interface InformerOptions {
  /** The collection (`/api/v1/nodes`, `/api/v1/pods`). */
  path: string;
  fieldSelector?: string;
  labelSelector?: string;
  /** Ends the loop. */
  signal: AbortSignal;
  /** Server-side length of one watch (default 300 s). */
  watchTimeoutSeconds?: number;
  /** Back-off after a failure (default 500 ms doubling to 30 s). */
  backoffMs?: { initial: number; max: number };
  /** A watch that brings nothing for this long is restarted (default 120 s; see `watch`). */
  watchIdleMs?: number;
  /** Told about every failure before the back-off (for logs and metrics). */
  onError?: (error: unknown, retryInMs: number) => void;
  /** Told whenever the API server answers: a list, a watch it accepted, a bookmark. */
  onOk?: () => void;
}

function keyOf(o: KubeObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** Lists and watches `opts.path` until the signal aborts; see the module doc. */
export async function* inform<T extends KubeObject>(
  client: KubeClient,
  opts: InformerOptions,
): AsyncGenerator<InformerEvent<T>> {
  const { signal } = opts;
  const selectors = {
    ...(opts.fieldSelector ? { fieldSelector: opts.fieldSelector } : {}),
    ...(opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
  };
  const backoff = opts.backoffMs ?? { initial: 500, max: 30_000 };
  let delay = backoff.initial;
  const known = new Map<string, T>();
  let rv: string | undefined; // undefined = must list
  while (!signal.aborted) {
    try {
      if (rv === undefined) {
        const list = await client.list<T>(opts.path, { query: selectors, signal });
        opts.onOk?.();
        const fresh = new Map(list.items.map((o) => [keyOf(o), o]));
        for (const [k, old] of known) {
          if (!fresh.has(k)) {
            known.delete(k);
            yield { type: "deleted", object: old, resourceVersion: list.resourceVersion };
          }
        }
        for (const [k, o] of fresh) {
          const old = known.get(k);
          known.set(k, o);
          if (!old) yield { type: "added", object: o, resourceVersion: list.resourceVersion };
          else if (old.metadata.resourceVersion !== o.metadata.resourceVersion) {
            yield { type: "modified", object: o, resourceVersion: list.resourceVersion };
          }
        }
        rv = list.resourceVersion;
        yield { type: "synced", objects: [...known.values()], resourceVersion: rv };
      }
      const started = Date.now();
      let events = 0;
      for await (
        const e of client.watch<T>(opts.path, {
          ...selectors,
          resourceVersion: rv,
          allowWatchBookmarks: true,
          timeoutSeconds: opts.watchTimeoutSeconds ?? 300,
          ...(opts.watchIdleMs ? { idleTimeoutMs: opts.watchIdleMs } : {}),
          ...(opts.onOk ? { onOpen: opts.onOk } : {}),
          signal,
        })
      ) {
        delay = backoff.initial;
        events++;
        if (e.type === "BOOKMARK") {
          opts.onOk?.();
          if (e.resourceVersion) rv = e.resourceVersion;
          yield { type: "bookmark", resourceVersion: rv };
          continue;
        }
        const o = e.object;
        rv = o.metadata.resourceVersion ?? rv;
        if (e.type === "DELETED") {
          known.delete(keyOf(o));
          yield { type: "deleted", object: o, resourceVersion: rv };
        } else {
          const had = known.has(keyOf(o));
          known.set(keyOf(o), o);
          yield { type: had ? "modified" : "added", object: o, resourceVersion: rv };
        }
      }
      // The server ended the watch: resume from where it stopped (not in a hot loop when
      // it keeps ending them at once).
      if (events === 0 && Date.now() - started < 1000) {
        await sleep(delay, signal);
        delay = Math.min(delay * 2, backoff.max);
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof KubeGoneError) {
        opts.onError?.(e, 0);
        rv = undefined; // list again, at once
        continue;
      }
      const wait = waitAfter(e, delay);
      opts.onError?.(e, wait);
      await sleep(wait, signal);
      delay = Math.min(delay * 2, backoff.max);
    }
  }
}

/** The wait before the next try: the server's Retry-After, else `delay` ±25 %. */
export function waitAfter(e: unknown, delay: number, random = Math.random()): number {
  const asked = e instanceof KubeApiError ? e.retryAfterMs : undefined;
  if (asked !== undefined) return asked;
  return Math.round(delay * (0.75 + 0.5 * random));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
