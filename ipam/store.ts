/**
 * The Store seam: a small key-value store with revisions and compare-then-write
 * transactions. IPAM policy (ranges, pools, blocks, handles) lives above it; the
 * in-memory store (tests), the local file store (the embedded plugin IPAM) and the etcd
 * store (cluster IPAM) live below it and all pass one contract test
 * (`ipam/store_contract.ts`).
 *
 * Rules every store keeps:
 * - a commit applies all its mutations or none, and only when every compare holds;
 * - the store has one revision counter; each successful commit that changes something
 *   raises it by one, and every key written by it gets that `modRevision`;
 * - `list(prefix)` returns keys in byte order;
 * - a store that cannot be reached throws {@link StoreUnavailableError} within its
 *   timeout, never hangs.
 * @module
 */

import { namedError } from "../lib/errors.ts";

/** One stored key. */
export interface KV {
  key: string;
  value: string;
  /** Revision of the commit that created the key. */
  createRevision: number;
  /** Revision of the commit that last wrote the key. */
  modRevision: number;
}

/** A condition a commit checks before writing. */
export type Compare =
  /** The key does not exist (create-if-absent). */
  | { key: string; absent: true }
  /** The key exists and was last written at this revision (delete/update-if-unchanged). */
  | { key: string; modRevision: number }
  /** The key exists and holds exactly this value. */
  | { key: string; value: string };

export type Mutation =
  | { put: string; value: string }
  | { delete: string }
  /** Deletes every key that starts with the prefix. */
  | { deletePrefix: string };

export interface Txn {
  compare?: Compare[];
  mutations: Mutation[];
}

export interface CommitResult {
  /** Whether every compare held and the mutations were applied. */
  ok: boolean;
  /** The store revision after the commit (unchanged when `ok` is false). */
  revision: number;
}

export type WatchEvent =
  | { type: "put"; kv: KV }
  | { type: "delete"; key: string; modRevision: number }
  /** The watch could not continue (compacted past its revision, or its stream was lost): list again. */
  | { type: "reset"; revision: number };

export interface WatchOptions {
  /** Deliver changes after this revision (default: from now). */
  afterRevision?: number;
  signal?: AbortSignal;
}

/** What a store can be read with (also handed to {@link atomically}'s decide step). */
export interface StoreReader {
  get(key: string): Promise<KV | undefined>;
  /** Keys starting with `prefix`, in byte order. */
  list(prefix: string): Promise<KV[]>;
}

export interface Store extends StoreReader, AsyncDisposable {
  /** `memory`, `local` or `etcd`: for messages and metrics. */
  readonly kind: string;
  /** Where it is: a directory, endpoints. For messages. */
  readonly location: string;
  /** The one file holding the whole state, when there is one (the local store). For messages. */
  readonly file?: string;
  /** The store's current revision. */
  revision(): Promise<number>;
  /** Applies a transaction atomically if all compares hold. */
  commit(txn: Txn): Promise<CommitResult>;
  /**
   * Streams changes under `prefix` until the signal aborts. Stores that cannot watch
   * (the local file store) leave it undefined.
   */
  watch?(prefix: string, opts?: WatchOptions): AsyncIterable<WatchEvent>;
  /**
   * Runs `fn` with the store exclusively held, if the store can lock (the local file
   * store: one flock for many plugin processes). Used by {@link atomically} so that
   * contended local allocation never retries.
   */
  exclusive?<T>(fn: (reader: StoreReader) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * The store could not be reached, read or written (CNI code 5, I/O failure; the agent
 * answers `not-ready`, which the plugin reports as 11).
 */
export class StoreUnavailableError extends namedError("StoreUnavailableError") {}

/**
 * The store answered this one request with an error (too large, invalid): retrying it
 * will not help, and the store is fine for other requests.
 */
export class StoreRequestError extends namedError("StoreRequestError") {}

/**
 * Another process has held the store's lock for longer than the lock wait (CNI code 11:
 * try again later). The message names the lock file and, when it can be found, the holder.
 */
export class StoreBusyError extends namedError("StoreBusyError", StoreUnavailableError) {}

/**
 * The store is readable but holds an entry that is not what its key says it is (a cursor
 * that is not an address, a record that is not JSON, an address key that is not an
 * address): CNI code 5. The message names the file (or store), the key, the value when
 * it is the value that is bad, and what is wrong; nothing is written over it.
 */
export class StoreDataError extends namedError("StoreDataError", StoreUnavailableError) {
  constructor(
    store: Store,
    readonly key: string,
    readonly problem: string,
    readonly value?: string,
  ) {
    const shown = value === undefined
      ? ""
      : ` = ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)}`;
    super(
      `the IPAM store ${store.file ?? `${store.kind} ${store.location}`} holds a bad entry: ` +
        `${key}${shown}: ${problem}; fix or remove that key`,
    );
  }
}

/** {@link atomically} lost every attempt to concurrent writers. */
export class StoreConflictError extends namedError("StoreConflictError") {}

/** What {@link atomically}'s decide step returns: the transaction and its outcome. */
export interface Plan<T> {
  txn?: Txn;
  result: T;
}

/**
 * Read → decide → commit, retried on conflict: the one way IPAM changes a store.
 * `decide` reads what it needs through the reader and returns the transaction whose
 * compares protect its decision (or no transaction, to return without writing). On a
 * store that can lock, the whole round runs under the lock.
 */
export async function atomically<T>(
  store: Store,
  decide: (reader: StoreReader, attempt: number) => Promise<Plan<T>>,
  opts: { attempts?: number; what?: string } = {},
): Promise<T> {
  const attempts = opts.attempts ?? 20;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const round = async (reader: StoreReader) => {
      const plan = await decide(reader, attempt);
      if (!plan.txn) return { done: true, result: plan.result };
      const r = await store.commit(plan.txn);
      return { done: r.ok, result: plan.result };
    };
    const out = store.exclusive ? await store.exclusive(round) : await round(store);
    if (out.done) return out.result;
    // Lost a race: back off a little, with jitter, so contenders spread out.
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 ** attempt)));
  }
  throw new StoreConflictError(
    `${opts.what ?? "store update"} lost ${attempts} attempts to concurrent writers`,
  );
}

/** Checks one compare against the current value (shared by memory and local stores). */
export function compareHolds(c: Compare, kv: KV | undefined): boolean {
  if ("absent" in c) return kv === undefined;
  if ("modRevision" in c) return kv !== undefined && kv.modRevision === c.modRevision;
  return kv !== undefined && kv.value === c.value;
}
