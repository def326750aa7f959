/**
 * The local file store: the embedded IPAM's state on one machine, shared safely by many
 * plugin processes at once.
 *
 * Layout of the directory (default `/var/lib/ohno/ipam`, the `dataDir` config key):
 * - `store.json`: `{"revision": N, "keys": {KEY: [VALUE, CREATE_REV, MOD_REV]}}`, the
 *   whole store, replaced atomically (temp file, fsync, rename) by every commit;
 * - `store.lock`: `flock`ed exclusively for every write, so writers of different
 *   processes take turns; readers need no lock (rename is atomic). A writer gives up with
 *   {@link StoreBusyError}, naming the holder, when one process has held it for
 *   {@link LOCK_WAIT_MS} (or others have, one after another, for 12 times that);
 * - `store.json.<pid>.tmp`: the next state while it is being written. Only ever written
 *   under the lock, so any such file found while holding the lock was left by a writer
 *   that died (SIGKILL between create and rename): every write removes them first, and a
 *   write that fails removes its own.
 *
 * One file rather than a file per address: a commit that touches several keys (the
 * address, its handle, the round-robin cursor) is atomic even across a crash, and a node
 * holds at most a few hundred allocations.
 * @module
 */

import { sleep } from "../lib/async.ts";
import { applyTxn, emptyState, kvOf, type KvState, listOf } from "./kvstate.ts";
import {
  type CommitResult,
  type KV,
  type Store,
  StoreBusyError,
  type StoreReader,
  StoreUnavailableError,
  type Txn,
} from "./store.ts";

export const DEFAULT_DATA_DIR = "/var/lib/ohno/ipam";

/**
 * How long a writer waits for `store.lock` before giving up with {@link StoreBusyError}
 * (CNI error 11). A commit holds the lock for milliseconds; a lock held this long means a
 * stuck process, and the runtime retries the ADD later.
 */
export const LOCK_WAIT_MS = 5_000;

/**
 * While the lock passes from writer to writer the wait goes on, but at most this many
 * times {@link LOCK_WAIT_MS} in all (60 s).
 */
export const LOCK_QUEUE_FACTOR = 12;

export interface LocalStoreOptions {
  /** fsync the state file before renaming it into place (default true). */
  durable?: boolean;
  /** How long to wait for the lock (default {@link LOCK_WAIT_MS}). */
  lockWaitMs?: number;
}

const TMP_RE = /^store\.json\.\d+\.tmp$/;

export class LocalStore implements Store {
  readonly kind = "local";
  readonly file: string;
  readonly #lockFile: string;
  readonly #durable: boolean;
  readonly #lockWaitMs: number;
  /** Serialises this process's own operations (flock is per open file, not per process). */
  #queue: Promise<unknown> = Promise.resolve();
  /** The state while this process holds the lock inside `exclusive`. */
  #held: { state: KvState; dirty: boolean } | undefined;

  constructor(readonly location: string, opts: LocalStoreOptions = {}) {
    this.file = `${location}/store.json`;
    this.#lockFile = `${location}/store.lock`;
    this.#durable = opts.durable ?? true;
    this.#lockWaitMs = opts.lockWaitMs ?? LOCK_WAIT_MS;
  }

  #read(): KvState {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return emptyState();
      throw new StoreUnavailableError(
        `cannot read the IPAM store ${this.file}: ${(e as Error).message}`,
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
        `the IPAM store ${this.file} is corrupt (${
          (e as Error).message
        }); move it away to start over`,
        { cause: e },
      );
    }
  }

  /**
   * Writes `state` to a temp file and renames it over the store (only under the lock).
   * With `rename: false` the temp file is removed instead: a probe that the whole state
   * could be written now (STATUS). Stale temp files go first; on failure our own goes too.
   */
  #write(state: KvState, { rename = true } = {}): void {
    this.#removeStaleTemps();
    const tmp = `${this.file}.${Deno.pid}.tmp`;
    const data = new TextEncoder().encode(JSON.stringify(state));
    try {
      const f = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
      try {
        let off = 0;
        while (off < data.length) off += f.writeSync(data.subarray(off));
        if (this.#durable && rename) f.syncDataSync();
      } finally {
        f.close();
      }
      if (rename) Deno.renameSync(tmp, this.file);
      else Deno.removeSync(tmp);
    } catch (e) {
      try {
        Deno.removeSync(tmp);
      } catch {
        // never created, or already gone
      }
      throw new StoreUnavailableError(
        `cannot write the IPAM store ${this.file}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  /** Removes temp files of writers that died mid-write (we hold the lock: nobody writes). */
  #removeStaleTemps(): void {
    try {
      for (const e of Deno.readDirSync(this.location)) {
        if (!e.isFile || !TMP_RE.test(e.name)) continue;
        try {
          Deno.removeSync(`${this.location}/${e.name}`);
        } catch {
          // a read-only or vanished file: the write that follows reports what matters
        }
      }
    } catch {
      // an unreadable directory: the write that follows reports it
    }
  }

  /** What changes when a writer gets the lock or finishes: the holder, the file's inode. */
  #progress(): string {
    let ino: number | null | string = "none";
    try {
      ino = Deno.statSync(this.file).ino;
    } catch {
      // no state file yet
    }
    return `${lockHolderPid(this.#lockFile) ?? "?"} ${ino}`;
  }

  /** Opens the lock file and takes the flock, waiting at most the lock wait per holder. */
  async #lock(): Promise<Deno.FsFile> {
    let lock: Deno.FsFile;
    try {
      lock = await Deno.open(this.#lockFile, { read: true, write: true, create: true });
    } catch (e) {
      throw new StoreUnavailableError(
        `cannot open the IPAM store's lock file ${this.#lockFile}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    try {
      // Poll a non-blocking flock: a blocking one cannot be abandoned at a deadline. The
      // wait is for one holder: while the lock passes from writer to writer (many ADDs at
      // once on a loaded node) it goes on, up to LOCK_QUEUE_FACTOR times as long in all.
      const start = Date.now();
      let seen: string | undefined, since = start, look = start, pause = 1;
      while (!lock.tryLockSync(true)) {
        const now = Date.now();
        if (now >= look) {
          const progress = this.#progress();
          if (progress !== seen) [seen, since] = [progress, now];
          look = now + 100;
        }
        const stuck = now - since >= this.#lockWaitMs;
        if (stuck || now - start >= this.#lockWaitMs * LOCK_QUEUE_FACTOR) {
          const held = stuck
            ? `has been held for more than ${this.#lockWaitMs / 1000} s by`
            : `has been busy for more than ${
              this.#lockWaitMs * LOCK_QUEUE_FACTOR / 1000
            } s, held now by`;
          throw new StoreBusyError(
            `the IPAM store ${this.file} is busy: its lock ${this.#lockFile} ${held} ` +
              `${lockHolder(this.#lockFile)}; try again later`,
          );
        }
        await sleep(pause + Math.random() * pause);
        pause = Math.min(pause * 2, 20);
      }
      return lock;
    } catch (e) {
      lock.close();
      if (e instanceof StoreUnavailableError) throw e;
      throw new StoreUnavailableError(
        `cannot lock ${this.#lockFile}: ${(e as Error).message}`,
        { cause: e },
      );
    }
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
      const lock = await this.#lock();
      try {
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

  /**
   * Whether a write can be done now: takes the lock (within the lock wait), reads the
   * state and writes it whole to a temp file that is then removed. Throws what a commit
   * would throw (read-only or full file system, corrupt file, lock held too long).
   */
  probeWrite(): Promise<void> {
    return this.#locked(() => {
      this.#write(this.#read(), { rename: false });
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    return this.#queue.then(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The process holding a lock on `path`, from /proc/locks (the lock whose device and inode
 * are the file's): its pid, 0 for a lock that has none (an OFD lock), undefined when none
 * is found.
 */
export function lockHolderPid(path: string): number | undefined {
  let ino: number, dev: bigint;
  let locks: string;
  try {
    const st = Deno.statSync(path);
    if (st.ino === null || st.dev === null) return undefined;
    ino = st.ino;
    dev = BigInt(st.dev);
    locks = Deno.readTextFileSync("/proc/locks");
  } catch {
    return undefined;
  }
  // The kernel's encoding of st_dev (MAJOR/MINOR in <linux/kdev_t.h>, as glibc splits it).
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  for (const line of locks.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:9978950 0 EOF"; waiters have "->" and are skipped.
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[1] === "->") continue;
    const where = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/.exec(f[5]!);
    if (!where || Number(where[3]) !== ino) continue;
    if (BigInt(`0x${where[1]}`) !== major || BigInt(`0x${where[2]}`) !== minor) continue;
    const pid = Number(f[4]);
    return pid > 0 ? pid : 0;
  }
  return undefined;
}

/** Who holds a lock on `path`, for messages: `pid 1234 (sleep 600)`. */
export function lockHolder(path: string): string {
  const pid = lockHolderPid(path);
  if (pid === undefined) return "another process (not found in /proc/locks)";
  if (pid === 0) return "an open file description (no process id in /proc/locks)";
  return `pid ${pid}${commandOf(pid)}`;
}

/** ` (the command line)` of a process, or `` when it cannot be read. */
function commandOf(pid: number): string {
  try {
    const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter((a) => a);
    const text = argv.length ? argv.join(" ") : Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
    return text ? ` (${text.length > 120 ? `${text.slice(0, 120)}…` : text})` : "";
  } catch {
    return "";
  }
}
