/**
 * The local file store: the embedded IPAM's state on one machine, shared safely by many
 * plugin processes at once.
 *
 * Layout of the directory (default `/var/lib/ohno/ipam`, the `dataDir` config key):
 * - `store.json`: `{"revision": N, "keys": {KEY: [VALUE, CREATE_REV, MOD_REV]}}`, the
 *   whole store, replaced atomically (temp file, fsync, rename) by every commit;
 * - `store.lock`: `flock`ed exclusively for every write, so writers of different
 *   processes take turns; readers need no lock (rename is atomic).
 *
 * One file rather than a file per address: a commit that touches several keys (the
 * address, its handle, the round-robin cursor) is atomic even across a crash, and a node
 * holds at most a few hundred allocations.
 * @module
 */

import { applyTxn, emptyState, kvOf, type KvState, listOf } from "./kvstate.ts";
import {
  type CommitResult,
  type KV,
  type Store,
  type StoreReader,
  StoreUnavailableError,
  type Txn,
} from "./store.ts";

export const DEFAULT_DATA_DIR = "/var/lib/ohno/ipam";

export interface LocalStoreOptions {
  /** fsync the state file before renaming it into place (default true). */
  durable?: boolean;
}

export class LocalStore implements Store {
  readonly kind = "local";
  readonly #file: string;
  readonly #lockFile: string;
  readonly #durable: boolean;
  /** Serialises this process's own operations (flock is per open file, not per process). */
  #queue: Promise<unknown> = Promise.resolve();
  /** The state while this process holds the lock inside `exclusive`. */
  #held: { state: KvState; dirty: boolean } | undefined;

  constructor(readonly location: string, opts: LocalStoreOptions = {}) {
    this.#file = `${location}/store.json`;
    this.#lockFile = `${location}/store.lock`;
    this.#durable = opts.durable ?? true;
  }

  #read(): KvState {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.#file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return emptyState();
      throw new StoreUnavailableError(
        `cannot read the IPAM store ${this.#file}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    try {
      const s = JSON.parse(text) as KvState;
      if (typeof s.revision !== "number" || typeof s.keys !== "object" || s.keys === null) {
        throw new Error("missing revision or keys");
      }
      return s;
    } catch (e) {
      throw new StoreUnavailableError(
        `the IPAM store ${this.#file} is corrupt (${
          (e as Error).message
        }); move it away to start over`,
        { cause: e },
      );
    }
  }

  #write(state: KvState): void {
    const tmp = `${this.#file}.${Deno.pid}.tmp`;
    const data = new TextEncoder().encode(JSON.stringify(state));
    const f = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      let off = 0;
      while (off < data.length) off += f.writeSync(data.subarray(off));
      if (this.#durable) f.syncDataSync();
    } finally {
      f.close();
    }
    Deno.renameSync(tmp, this.#file);
  }

  /** Runs `fn` after this process's earlier operations, holding the flock. */
  #locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      try {
        Deno.mkdirSync(this.location, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw new StoreUnavailableError(
          `cannot create the IPAM store directory ${this.location}: ${(e as Error).message}`,
          { cause: e },
        );
      }
      const lock = await Deno.open(this.#lockFile, { read: true, write: true, create: true });
      try {
        await lock.lock(true);
        return await fn();
      } finally {
        lock.close(); // closing releases the flock
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  get(key: string): Promise<KV | undefined> {
    return Promise.resolve(kvOf(this.#held?.state ?? this.#read(), key));
  }

  list(prefix: string): Promise<KV[]> {
    return Promise.resolve(listOf(this.#held?.state ?? this.#read(), prefix));
  }

  revision(): Promise<number> {
    return Promise.resolve((this.#held?.state ?? this.#read()).revision);
  }

  commit(txn: Txn): Promise<CommitResult> {
    const held = this.#held;
    if (held) {
      const { ok, events } = applyTxn(held.state, txn);
      if (events.length) held.dirty = true;
      return Promise.resolve({ ok, revision: held.state.revision });
    }
    return this.#locked(() => {
      const state = this.#read();
      const { ok, events } = applyTxn(state, txn);
      if (events.length) this.#write(state);
      return Promise.resolve({ ok, revision: state.revision });
    });
  }

  exclusive<T>(fn: (reader: StoreReader) => Promise<T>): Promise<T> {
    return this.#locked(async () => {
      const held = { state: this.#read(), dirty: false };
      this.#held = held;
      try {
        const result = await fn(this);
        if (held.dirty) this.#write(held.state);
        return result;
      } finally {
        this.#held = undefined;
      }
    });
  }

  close(): Promise<void> {
    return this.#queue.then(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
