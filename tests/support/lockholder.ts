/**
 * Another process holding a file's lock, as a second writer would: `flock --no-fork`, so
 * the spawned process itself holds the lock, then `exec sleep 600`. `holdLock` returns once
 * the lock is held and the holder is `sleep 600` (so it is named by that command line);
 * `release()` (or disposal) kills it.
 * @module
 */

import { within } from "./wait.ts";

export interface LockHolder extends AsyncDisposable {
  pid: number;
  /** Kills the holder; the lock is free once this resolves. Safe to call twice. */
  release(): Promise<void>;
}

export async function holdLock(file: string): Promise<LockHolder> {
  const holder = new Deno.Command("flock", {
    args: ["--no-fork", "--exclusive", file, "sh", "-c", "echo held; exec sleep 600"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const out = holder.stdout.getReader();
  let released: Promise<void> | undefined;
  const release = () =>
    released ??= (async () => {
      try {
        holder.kill("SIGKILL");
      } catch {
        // gone already
      }
      await out.cancel();
      await holder.status;
    })();
  try {
    const first = await out.read();
    if (new TextDecoder().decode(first.value).trim() !== "held") {
      throw new Error(`flock on ${file} did not take the lock`);
    }
    // The shell says "held" just before it execs sleep: wait for the exec.
    await within(10_000, "the lock holder exec'd sleep", () => {
      try {
        return Promise.resolve(
          Deno.readTextFileSync(`/proc/${holder.pid}/cmdline`) === "sleep\u0000600\u0000",
        );
      } catch {
        return Promise.resolve(false);
      }
    });
  } catch (e) {
    await release();
    throw e;
  }
  return { pid: holder.pid, release, [Symbol.asyncDispose]: release };
}
