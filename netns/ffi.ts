/**
 * The few libc calls the namespace driver needs, through Deno FFI.
 *
 * Loaded lazily on first use, so a process that never switches namespaces never pays
 * for `dlopen`. Every call is synchronous and runs on the JavaScript thread, which is
 * exactly the thread whose namespace membership we change; one exception,
 * {@link sysSendAsync}, for a netlink request that may take the kernel long.
 * @module
 */

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
/** setns(2) nstype for network namespaces. */
const CLONE_NEWNET = 0x40000000;

const symbols = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  /** send(2) on Deno's blocking thread pool: the kernel does an rtnetlink request in it. */
  send_async: {
    name: "send",
    parameters: ["i32", "buffer", "usize", "i32"],
    result: "isize",
    nonblocking: true,
  },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
} as const;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];
let libc: Libc | undefined;

function lib(): Libc {
  if (!libc) libc = Deno.dlopen("libc.so.6", symbols).symbols;
  return libc;
}

function errno(): number {
  const p = lib().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

const encoder = new TextEncoder();

/** Result of a libc call: the value, or the errno when it failed. */
export type Sys = { ok: true; value: number } | { ok: false; errno: number };

/** open(path, O_RDONLY|O_CLOEXEC). */
export function sysOpen(path: string): Sys {
  const buf = encoder.encode(path + "\0");
  const fd = lib().open(buf, O_RDONLY | O_CLOEXEC);
  return fd < 0 ? { ok: false, errno: errno() } : { ok: true, value: fd };
}

/** close(fd); errors are ignored (nothing useful to do). */
export function sysClose(fd: number): void {
  lib().close(fd);
}

/** setns(fd, CLONE_NEWNET) on the calling (JavaScript) thread. */
export function sysSetns(fd: number): Sys {
  const r = lib().setns(fd, CLONE_NEWNET);
  return r < 0 ? { ok: false, errno: errno() } : { ok: true, value: 0 };
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFMTU = 0x8921;
const SIOCETHTOOL = 0x8946;
const ETHTOOL_GDRVINFO = 3;

/**
 * The MTU of interface `name` in the calling thread's namespace (SIOCGIFMTU on a
 * throwaway socket: the socket belongs to the namespace it is created in).
 */
export function sysIfMtu(name: string): Sys {
  return ifreqIoctl(name, SIOCGIFMTU, (ifreq) => new DataView(ifreq.buffer).getInt32(16, true));
}

/**
 * The driver of interface `name` in the calling thread's namespace (ethtool's
 * ETHTOOL_GDRVINFO: `bridge`, `veth`, `dummy`, `e1000`, …; for virtual links without
 * their own answer the kernel reports the link kind). One ioctl, no process.
 */
export function sysIfDriver(
  name: string,
): { ok: true; value: string } | { ok: false; errno: number } {
  // struct ethtool_drvinfo: u32 cmd, char driver[32], … (196 bytes in all).
  const info = new Uint8Array(196);
  new DataView(info.buffer).setUint32(0, ETHTOOL_GDRVINFO, true);
  const ptr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(info));
  return ifreqIoctl(name, SIOCETHTOOL, () => {
    const driver = info.subarray(4, 36);
    const end = driver.indexOf(0);
    return new TextDecoder().decode(driver.subarray(0, end < 0 ? 32 : end));
  }, (ifreq) => new DataView(ifreq.buffer).setBigUint64(16, BigInt(ptr), true));
}

const ETHTOOL_GTXCSUM = 0x16;
const ETHTOOL_STXCSUM = 0x17;

/**
 * TX checksum offload of interface `name` (ethtool's legacy ETHTOOL_GTXCSUM/STXCSUM: every
 * checksum feature the device has, as `ethtool -K NAME tx on|off`): sets it when `on` is
 * given, and returns the state read afterwards. One or two ioctls, no ethtool needed.
 */
export function sysIfTxChecksum(
  name: string,
  on?: boolean,
): { ok: true; value: boolean } | { ok: false; errno: number } {
  // struct ethtool_value: u32 cmd, u32 data.
  const value = new Uint8Array(8);
  const view = new DataView(value.buffer);
  const ptr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(value));
  const point = (ifreq: Uint8Array) =>
    new DataView(ifreq.buffer).setBigUint64(16, BigInt(ptr), true);
  if (on !== undefined) {
    view.setUint32(0, ETHTOOL_STXCSUM, true);
    view.setUint32(4, on ? 1 : 0, true);
    const r = ifreqIoctl(name, SIOCETHTOOL, () => true, point);
    if (!r.ok) return r;
  }
  view.setUint32(0, ETHTOOL_GTXCSUM, true);
  view.setUint32(4, 0, true);
  return ifreqIoctl(name, SIOCETHTOOL, () => view.getUint32(4, true) !== 0, point);
}

const SIOCGIFADDR = 0x8915;

/**
 * The primary IPv4 address of interface `name` in the calling thread's namespace
 * (SIOCGIFADDR); errno 99 (EADDRNOTAVAIL) when it has none, 19 when it does not exist.
 */
export function sysIfAddr4(
  name: string,
): { ok: true; value: string } | { ok: false; errno: number } {
  return ifreqIoctl(name, SIOCGIFADDR, (ifreq) => Array.from(ifreq.subarray(20, 24)).join("."));
}

/**
 * One ioctl on interface `name` in the calling thread's namespace: a struct ifreq (char[16]
 * name, then the union, which `prepare` may fill) on a throwaway socket (the socket belongs
 * to the namespace it is created in); `read` takes the answer.
 */
function ifreqIoctl<T>(
  name: string,
  request: number,
  read: (ifreq: Uint8Array) => T,
  prepare?: (ifreq: Uint8Array) => void,
): { ok: true; value: T } | { ok: false; errno: number } {
  const l = lib();
  const fd = l.socket(AF_INET, SOCK_DGRAM | O_CLOEXEC, 0);
  if (fd < 0) return { ok: false, errno: errno() };
  try {
    const ifreq = new Uint8Array(40);
    ifreq.set(encoder.encode(name).subarray(0, 15));
    prepare?.(ifreq);
    if (l.ioctl(fd, BigInt(request), ifreq) < 0) return { ok: false, errno: errno() };
    return { ok: true, value: read(ifreq) };
  } finally {
    l.close(fd);
  }
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;
const EINTR = 4;

/**
 * socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE): an rtnetlink socket, which
 * belongs to the namespace of the calling thread for the rest of its life.
 */
export function sysNetlinkSocket(): Sys {
  const fd = lib().socket(AF_NETLINK, SOCK_RAW | O_CLOEXEC, NETLINK_ROUTE);
  return fd < 0 ? { ok: false, errno: errno() } : { ok: true, value: fd };
}

/** setsockopt(fd, level, name, value, value.length). */
export function sysSetsockopt(fd: number, level: number, name: number, value: Uint8Array): Sys {
  const r = lib().setsockopt(fd, level, name, value, value.length);
  return r < 0 ? { ok: false, errno: errno() } : { ok: true, value: 0 };
}

/** send(fd, buf, len, 0), retried on EINTR; the value is the bytes sent. */
export function sysSend(fd: number, buf: Uint8Array): Sys {
  for (;;) {
    const r = Number(lib().send(fd, buf, BigInt(buf.length), 0));
    if (r >= 0) return { ok: true, value: r };
    const e = errno();
    if (e !== EINTR) return { ok: false, errno: e };
  }
}

/**
 * send(fd, buf, len, 0) on another thread: rtnetlink does a request inside send(2), in the
 * sender's context, and deleting a link waits there for RCU grace periods (20-40 ms);
 * this keeps the JavaScript thread free meanwhile. errno is that thread's, so a failure
 * is sent again here to learn why. `buf` must not change until the promise settles.
 */
export async function sysSendAsync(fd: number, buf: Uint8Array): Promise<Sys> {
  const r = Number(await lib().send_async(fd, buf, BigInt(buf.length), 0));
  return r >= 0 ? { ok: true, value: r } : sysSend(fd, buf);
}

/**
 * recv(fd, buf, len, flags), retried on EINTR; blocks (the socket's SO_RCVTIMEO bounds
 * it). With MSG_TRUNC the value is the datagram's real length, even when longer than `buf`.
 */
export function sysRecv(fd: number, buf: Uint8Array, flags = 0): Sys {
  for (;;) {
    const r = Number(lib().recv(fd, buf, BigInt(buf.length), flags));
    if (r >= 0) return { ok: true, value: r };
    const e = errno();
    if (e !== EINTR) return { ok: false, errno: e };
  }
}
