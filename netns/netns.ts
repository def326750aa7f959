/**
 * Entering network namespaces without thread trouble.
 *
 * Namespace membership is per OS thread. Deno runs JavaScript, synchronous ops and
 * synchronous FFI calls on one thread, and `Deno.Command#spawn` forks from it. So the
 * only safe pattern is: `setns(target)` → synchronous work (a spawn, a /proc/sys write)
 * → `setns(previous)`, with no `await` in between. {@link Netns.run} enforces it: the
 * section must be synchronous, and the thread is back in its previous namespace before
 * `run` returns or throws.
 *
 * @example
 * ```ts ignore
 * using ns = Netns.open("/var/run/netns/pod1");
 * const child = ns.spawn("ip", { args: ["-j", "addr"] }); // runs inside pod1
 * const out = await child.output();                       // awaited back home
 * ```
 * @module
 */

import { NetnsEnterError, NetnsError, NetnsNotFoundError } from "./errors.ts";
import { sysClose, sysOpen, sysSetns } from "./ffi.ts";

const ENOENT = 2;
const ENOTDIR = 20;

/** The fd of the namespace this thread is in right now (the top of the stack). */
let currentFd: number | undefined;
/** How deep we are in nested `run` sections; 0 = home. */
let depth = 0;

function homeFd(): number {
  if (currentFd === undefined) {
    // The thread's own namespace, opened once and kept for the life of the process.
    const r = sysOpen("/proc/thread-self/ns/net");
    if (!r.ok) throw new NetnsEnterError("/proc/thread-self/ns/net", r.errno, "open");
    currentFd = r.value;
  }
  return currentFd;
}

/** Path of the file that names a named namespace (`ip netns add NAME`). */
export function namedNetnsPath(name: string): string {
  return `/var/run/netns/${name}`;
}

/** Inode number identifying the namespace the calling thread is in now. */
export function currentNetnsInode(): number {
  return Deno.statSync("/proc/thread-self/ns/net").ino ?? 0;
}

/** An open handle on a network namespace. Close it (or `using`) when done. */
export class Netns implements Disposable {
  #fd: number | undefined;

  private constructor(readonly path: string, fd: number, readonly inode: number) {
    this.#fd = fd;
  }

  /**
   * Opens a namespace by path: `/var/run/netns/NAME`, `/proc/PID/ns/net`, or a bind
   * mount elsewhere. Throws {@link NetnsNotFoundError} when it does not exist.
   */
  static open(path: string): Netns {
    if (!path.startsWith("/")) {
      throw new NetnsNotFoundError(path, { cause: new TypeError("not an absolute path") });
    }
    let inode = 0;
    try {
      const st = Deno.statSync(path);
      inode = st.ino ?? 0;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
        throw new NetnsNotFoundError(path, { cause: e });
      }
      throw new NetnsError(`cannot stat network namespace ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const r = sysOpen(path);
    if (!r.ok) {
      if (r.errno === ENOENT || r.errno === ENOTDIR) throw new NetnsNotFoundError(path);
      throw new NetnsEnterError(path, r.errno, "open");
    }
    // A regular file that is not an nsfs file fails setns with EINVAL: check now, so a
    // wrong path is reported at open time rather than at first use. Where to come back
    // to is fixed before the probe moves the thread.
    const previous = homeFdOrCurrent();
    const probe = sysSetns(r.value);
    if (!probe.ok) {
      sysClose(r.value);
      if (probe.errno === 22) {
        throw new NetnsNotFoundError(path, {
          cause: new Error("not a network namespace file"),
        });
      }
      throw new NetnsEnterError(path, probe.errno, "enter");
    }
    // Go straight back to where this thread was.
    const back = sysSetns(previous);
    if (!back.ok) throw new NetnsEnterError("(previous)", back.errno, "return to");
    return new Netns(path, r.value, inode);
  }

  /** Opens a named namespace (`/var/run/netns/NAME`). */
  static named(name: string): Netns {
    return Netns.open(namedNetnsPath(name));
  }

  /** The namespace this process started in (the runtime's / host's namespace). */
  static home(): Netns {
    const fd = homeFd();
    const inode = Deno.statSync("/proc/thread-self/ns/net").ino ?? 0;
    // A non-owning handle: closing it does not close the process-wide home fd.
    const h = new Netns("/proc/thread-self/ns/net", fd, inode);
    h.#owned = false;
    return h;
  }

  #owned = true;

  get fd(): number {
    if (this.#fd === undefined) throw new NetnsError(`namespace handle ${this.path} is closed`);
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd === undefined;
  }

  /**
   * Whether this handle is the namespace the process started in (the one it calls home:
   * on a node, the host's). Compared by identity, the device and inode of the two open
   * namespace files, so any path to the same namespace (`/var/run/netns/NAME`,
   * `/proc/PID/ns/net`, a bind mount) is recognised.
   */
  isHome(): boolean {
    const mine = Deno.statSync(`/proc/self/fd/${this.fd}`);
    const home = Deno.statSync(`/proc/self/fd/${homeFd()}`);
    return mine.dev === home.dev && mine.ino === home.ino;
  }

  /**
   * Runs `fn` inside this namespace and returns to the previous one before returning
   * (also when `fn` throws). `fn` must be synchronous: a returned promise is an error,
   * because the thread would leave the namespace while the promise is still running.
   */
  run<T>(fn: () => T): T {
    const target = this.fd;
    const previous = depth === 0 ? homeFd() : currentFd!;
    const r = sysSetns(target);
    if (!r.ok) throw new NetnsEnterError(this.path, r.errno, "enter");
    const saved = currentFd;
    currentFd = target;
    depth++;
    let result: T | undefined;
    let failure: { error: unknown } | undefined;
    try {
      result = fn();
    } catch (e) {
      failure = { error: e };
    }
    depth--;
    currentFd = saved;
    const back = sysSetns(previous);
    if (!back.ok) {
      // The thread is stuck in the wrong namespace: nothing after this is safe.
      throw new NetnsEnterError("(previous)", back.errno, "return to", {
        cause: failure?.error,
      });
    }
    if (failure) throw failure.error;
    if (
      result !== null && (typeof result === "object" || typeof result === "function") &&
      typeof (result as { then?: unknown }).then === "function"
    ) {
      throw new NetnsError("Netns.run: the section returned a promise; it must be synchronous");
    }
    return result as T;
  }

  /**
   * Spawns a command inside this namespace: enter → spawn → return, nothing awaited in
   * between. The child keeps the namespace; await it from home.
   */
  spawn(cmd: string | URL, options: Deno.CommandOptions = {}): Deno.ChildProcess {
    return this.run(() => new Deno.Command(cmd, options).spawn());
  }

  /** Runs a command inside this namespace and collects its output. */
  output(cmd: string | URL, options: Deno.CommandOptions & { stdinText?: string } = {}) {
    return runCommand(this, cmd, options);
  }

  close(): void {
    if (this.#fd !== undefined && this.#owned) sysClose(this.#fd);
    this.#fd = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function homeFdOrCurrent(): number {
  return depth === 0 ? homeFd() : currentFd!;
}

export interface CommandResult {
  code: number;
  success: boolean;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();

/**
 * Runs a command (in `ns` when given, else here), feeding `stdinText`, and collects
 * stdout and stderr as text. Never throws for a non-zero exit; throws `Deno.errors.NotFound`
 * when the program does not exist.
 */
export async function runCommand(
  ns: Netns | undefined,
  cmd: string | URL,
  options: Deno.CommandOptions & { stdinText?: string } = {},
): Promise<CommandResult> {
  const { stdinText, ...opts } = options;
  const full: Deno.CommandOptions = {
    ...opts,
    stdin: stdinText !== undefined ? "piped" : (opts.stdin ?? "null"),
    stdout: "piped",
    stderr: "piped",
  };
  const child = ns ? ns.spawn(cmd, full) : new Deno.Command(cmd, full).spawn();
  if (stdinText !== undefined) {
    const w = child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(stdinText));
      await w.close();
    } catch {
      // The child may exit without reading its stdin; its exit status tells the story.
    }
  }
  const out = await child.output();
  return {
    code: out.code,
    success: out.success,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}
