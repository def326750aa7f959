/**
 * The name ohno was invoked under. Deno does not expose argv[0], so it is read from
 * `/proc/self/cmdline`; the development launcher (dist/ohno as a script) passes its own
 * `$0` in `OHNO_ARGV0`, because there the process's argv[0] is deno.
 * @module
 */

let cached: string | undefined;

/** argv[0] as the caller wrote it (a path or a bare name). */
export function invokedAs(): string {
  if (cached !== undefined) return cached;
  const fromLauncher = Deno.env.get("OHNO_ARGV0");
  if (fromLauncher) {
    // Children (ip, delegated plugins, a spawned ohno) must not inherit it.
    Deno.env.delete("OHNO_ARGV0");
    return (cached = fromLauncher);
  }
  try {
    const cmdline = Deno.readTextFileSync("/proc/self/cmdline");
    cached = cmdline.split("\0")[0] ?? "ohno";
  } catch {
    cached = "ohno";
  }
  return cached;
}

/**
 * The file that is this ohno program: the compiled binary, or the development launcher
 * (dist/ohno) that started this Deno. What `ohno daemon` copies into the CNI bin dir.
 */
export function selfExecutable(): string {
  const exe = Deno.execPath();
  if (!/\/deno$/.test(exe)) return exe; // compiled: the binary itself
  const a = invokedAs();
  if (a.includes("/")) return a.startsWith("/") ? a : `${Deno.cwd()}/${a}`;
  return exe;
}

/** The last path element of argv[0]. */
export function invokedName(): string {
  const a = invokedAs();
  return a.slice(a.lastIndexOf("/") + 1);
}
