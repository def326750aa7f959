/**
 * The name ohno was invoked under. Deno does not expose argv[0], so it is read from
 * `/proc/self/cmdline`; the development launcher (dist/ohno as a script) passes its own
 * `$0` in `OHNO_ARGV0`, because there the process's argv[0] is deno.
 * @module
 */

/** argv[0] as the caller wrote it (a path or a bare name). */
export function invokedAs(): string {
  const fromLauncher = Deno.env.get("OHNO_ARGV0");
  if (fromLauncher) {
    // Children (ip, delegated plugins, a spawned ohno) must not inherit it.
    Deno.env.delete("OHNO_ARGV0");
    return fromLauncher;
  }
  try {
    const cmdline = Deno.readTextFileSync("/proc/self/cmdline");
    return cmdline.split("\0")[0] ?? "ohno";
  } catch {
    return "ohno";
  }
}

/** The last path element of argv[0]. */
export function invokedName(): string {
  const a = invokedAs();
  return a.slice(a.lastIndexOf("/") + 1);
}
