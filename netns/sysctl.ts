/**
 * sysctl read and write, in a chosen namespace.
 *
 * Keys are dotted (`net.ipv4.ip_forward`) or slashed (`net/ipv6/conf/eth0.100/forwarding`,
 * for interface names that contain dots). `/proc/sys/net` shows the namespace of the
 * thread that opens the file, so the read or write runs inside {@link Netns.run}.
 * @module
 */

import { NetnsError } from "./errors.ts";
import type { Netns } from "./netns.ts";

/** `/proc/sys/…` path for a key. */
function sysctlPath(key: string): string {
  if (key.includes("..") || key.startsWith("/")) throw new TypeError(`bad sysctl key ${key}`);
  return "/proc/sys/" + (key.includes("/") ? key : key.replaceAll(".", "/"));
}

/** Reads a sysctl (trimmed). */
export function sysctlGet(key: string, opts: { netns?: Netns | undefined } = {}): string {
  const path = sysctlPath(key);
  const read = () => Deno.readTextFileSync(path).trim();
  try {
    return opts.netns ? opts.netns.run(read) : read();
  } catch (e) {
    throw new NetnsError(`sysctl ${key}: ${(e as Error).message}`, { cause: e });
  }
}

/** Writes a sysctl; skips the write when it already holds the value. */
export function sysctlSet(
  key: string,
  value: string | number,
  opts: { netns?: Netns | undefined } = {},
): void {
  const path = sysctlPath(key);
  const want = String(value);
  const write = () => {
    if (Deno.readTextFileSync(path).trim() === want) return;
    Deno.writeTextFileSync(path, want);
  };
  try {
    opts.netns ? opts.netns.run(write) : write();
  } catch (e) {
    throw new NetnsError(`sysctl ${key}=${want}: ${(e as Error).message}`, { cause: e });
  }
}
