/** The in-memory store: for tests and for the allocator's unit tests. */

import { applyTxn, emptyState, kvOf, type KvState, listOf } from "./kvstate.ts";
import type {
  CommitResult,
  KV,
  Store,
  StoreReader,
  Txn,
  WatchEvent,
  WatchOptions,
} from "./store.ts";

type Listener = (events: WatchEvent[]) => void;

export class MemoryStore implements Store {
  readonly kind = "memory";
  readonly location = "memory";
  #state: KvState = emptyState();
  #history: WatchEvent[] = [];
  #listeners = new Set<Listener>();
  #queue: Promise<unknown> = Promise.resolve();

  get(key: string): Promise<KV | undefined> {
    return Promise.resolve(kvOf(this.#state, key));
  }

  list(prefix: string): Promise<KV[]> {
    return Promise.resolve(listOf(this.#state, prefix));
  }

  revision(): Promise<number> {
    return Promise.resolve(this.#state.revision);
  }

  commit(txn: Txn): Promise<CommitResult> {
    const { ok, events } = applyTxn(this.#state, txn);
    if (events.length) {
      this.#history.push(...events);
      for (const l of this.#listeners) l(events);
    }
    return Promise.resolve({ ok, revision: this.#state.revision });
  }

  /** Serialises `fn` with other exclusive sections (like the local store's flock). */
  exclusive<T>(fn: (reader: StoreReader) => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => fn(this));
    this.#queue = run.catch(() => {});
    return run;
  }

  async *watch(prefix: string, opts: WatchOptions = {}): AsyncIterable<WatchEvent> {
    const pending: WatchEvent[] = [];
    let wake: (() => void) | undefined;
    const listener: Listener = (events) => {
      pending.push(...events.filter((e) => keyOf(e).startsWith(prefix)));
      wake?.();
    };
    if (opts.afterRevision !== undefined) {
      const after = opts.afterRevision;
      pending.push(
        ...this.#history.filter((e) => keyOf(e).startsWith(prefix) && revOf(e) > after),
      );
    }
    this.#listeners.add(listener);
    const onAbort = () => wake?.();
    opts.signal?.addEventListener("abort", onAbort);
    try {
      while (!opts.signal?.aborted) {
        if (pending.length === 0) {
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
          continue;
        }
        yield pending.shift()!;
      }
    } finally {
      this.#listeners.delete(listener);
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function keyOf(e: WatchEvent): string {
  return e.type === "put" ? e.kv.key : e.type === "delete" ? e.key : "";
}

function revOf(e: WatchEvent): number {
  return e.type === "put" ? e.kv.modRevision : e.type === "delete" ? e.modRevision : e.revision;
}
