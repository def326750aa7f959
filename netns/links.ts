/**
 * Cheap reads of a namespace's links and routes that need no `ip` process: procfs
 * (`/proc/thread-self/net/…` shows the namespace of the reading thread) and one ioctl.
 * The CNI hot path uses these to decide what its single `ip -batch` must do.
 * @module
 */

import { NetnsError } from "./errors.ts";
import { sysIfAddr4, sysIfDriver, sysIfMtu, sysIfTxChecksum } from "./ffi.ts";
import type { Netns } from "./netns.ts";

type Opts = { netns?: Netns | undefined };

function inNs<T>(opts: Opts, fn: () => T): T {
  return opts.netns ? opts.netns.run(fn) : fn();
}

/** Names of the network interfaces in a namespace (`/proc/thread-self/net/dev`). */
export function linkNames(opts: Opts = {}): string[] {
  const text = inNs(opts, () => Deno.readTextFileSync("/proc/thread-self/net/dev"));
  return text.split("\n").slice(2).map((l) => l.split(":")[0]!.trim()).filter((n) => n !== "");
}

/** The MTU of a link, or undefined when it does not exist. */
export function linkMtu(name: string, opts: Opts = {}): number | undefined {
  const r = inNs(opts, () => sysIfMtu(name));
  if (r.ok) return r.value;
  if (r.errno === 19) return undefined; // ENODEV
  throw new NetnsError(`cannot read the MTU of ${name}: errno ${r.errno}`);
}

/**
 * The driver of a link (`bridge`, `veth`, …; see {@link sysIfDriver}), undefined when the
 * link does not exist, "" when the kernel names none.
 */
export function linkDriver(name: string, opts: Opts = {}): string | undefined {
  const r = inNs(opts, () => sysIfDriver(name));
  if (r.ok) return r.value;
  if (r.errno === 19) return undefined; // ENODEV
  if (r.errno === 95) return ""; // EOPNOTSUPP: no driver information
  throw new NetnsError(`cannot read the driver of ${name}: errno ${r.errno}`);
}

/**
 * TX checksum offload of a link (`ethtool -k`'s `tx-checksum-*`): turned on or off when
 * `on` is given; returns the state after. Throws when the link does not exist or refuses.
 */
export function linkTxChecksum(name: string, on?: boolean, opts: Opts = {}): boolean {
  const r = inNs(opts, () => sysIfTxChecksum(name, on));
  if (r.ok) return r.value;
  throw new NetnsError(
    `cannot ${on === undefined ? "read" : "set"} TX checksum offload of ${name}: errno ${r.errno}`,
  );
}

/**
 * The interface holding the default route (IPv4 first, else IPv6), from
 * `/proc/thread-self/net/route` and `…/ipv6_route`; undefined when there is none.
 */
export function defaultRouteInterface(opts: Opts = {}): string | undefined {
  return inNs(opts, () => {
    const v4 = Deno.readTextFileSync("/proc/thread-self/net/route").split("\n").slice(1);
    for (const line of v4) {
      const f = line.trim().split(/\s+/);
      // Iface Destination Gateway Flags RefCnt Use Metric Mask …
      if (f.length >= 8 && f[1] === "00000000" && f[7] === "00000000") return f[0];
    }
    try {
      for (const line of Deno.readTextFileSync("/proc/thread-self/net/ipv6_route").split("\n")) {
        const f = line.trim().split(/\s+/);
        // dest plen src plen nexthop metric refcnt use flags iface
        if (f.length >= 10 && /^0{32}$/.test(f[0]!) && f[1] === "00" && f[9] !== "lo") {
          return f[9];
        }
      }
    } catch {
      // IPv6 disabled
    }
    return undefined;
  });
}

/**
 * The global addresses of a link, no process: its primary IPv4 address (one ioctl) and
 * its global IPv6 addresses (`/proc/thread-self/net/if_inet6`), without prefix.
 */
export function linkAddresses(name: string, opts: Opts = {}): string[] {
  return inNs(opts, () => {
    const out: string[] = [];
    const r = sysIfAddr4(name);
    if (r.ok) out.push(r.value);
    else if (r.errno !== 99 && r.errno !== 19) {
      throw new NetnsError(`cannot read the IPv4 address of ${name}: errno ${r.errno}`);
    }
    let text = "";
    try {
      text = Deno.readTextFileSync("/proc/thread-self/net/if_inet6");
    } catch {
      return out; // IPv6 disabled
    }
    for (const line of text.split("\n")) {
      // address ifindex prefixlen scope flags name; scope 00 is global
      const f = line.trim().split(/\s+/);
      if (f.length < 6 || f[5] !== name || f[3] !== "00") continue;
      out.push(f[0]!.match(/.{4}/g)!.join(":").replace(/\b0{1,3}/g, ""));
    }
    return out;
  });
}
