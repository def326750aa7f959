/**
 * The rtnetlink wire format, encode and decode, no I/O.
 *
 * A message is a `struct nlmsghdr` (16 bytes: length, type, flags, sequence, port id), a
 * fixed family header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`, `ndmsg`) and then attributes:
 * `struct rtattr` (u16 length, u16 type) followed by the payload, each padded to 4 bytes.
 * An attribute may nest further attributes. Everything is in host byte order (little
 * endian here) except what the kernel defines as network order (the VXLAN port).
 * Layouts follow the kernel's uapi headers (linux/netlink.h, linux/rtnetlink.h,
 * linux/if_link.h, linux/if_addr.h, linux/neighbour.h).
 * @module
 */

// ---- netlink message types and flags (linux/netlink.h, linux/rtnetlink.h) ----

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
/** Send the resulting object back to the requester (links: Linux 6.2 and later). */
export const NLM_F_ECHO = 0x8;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
/** In an ACK: the error message carries extended-ACK attributes (NLMSGERR_ATTR_*). */
export const NLM_F_ACK_TLVS = 0x200;
/** In an ACK: the echoed request was cut to its header (NETLINK_CAP_ACK). */
export const NLM_F_CAPPED = 0x100;
export const NLMSGERR_ATTR_MSG = 1;

export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;

/** The address family of a dump request: 4, 6, or both (AF_UNSPEC). */
export function afOf(family?: 4 | 6): number {
  return family === 4 ? AF_INET : family === 6 ? AF_INET6 : AF_UNSPEC;
}

// ---- links (linux/if_link.h, linux/if.h) ----

export const IFF_UP = 0x1;
export const IFF_BROADCAST = 0x2;
export const IFF_LOOPBACK = 0x8;
export const IFF_POINTOPOINT = 0x10;
export const IFF_NOARP = 0x80;
export const IFF_PROMISC = 0x100;
export const IFF_MULTICAST = 0x1000;
export const IFF_LOWER_UP = 0x10000;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_AF_SPEC = 26;
export const IFLA_NET_NS_FD = 28;
export const IFLA_EXT_MASK = 29;
export const IFLA_LINK_NETNSID = 37;

export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const IFLA_INFO_SLAVE_KIND = 4;
export const IFLA_INFO_SLAVE_DATA = 5;

/** In IFLA_INFO_SLAVE_DATA of a bridge port: hairpin mode (u8). */
export const IFLA_BRPORT_MODE = 4;
/** In IFLA_AF_SPEC → AF_INET6: how IPv6 link-local addresses are made (u8). */
export const IFLA_INET6_ADDR_GEN_MODE = 8;
export const ADDR_GEN_MODES = ["eui64", "none", "stable_secret", "random"] as const;

export const IFLA_MACVLAN_MODE = 1;
export const MACVLAN_MODES: Record<string, number> = {
  private: 1,
  vepa: 2,
  bridge: 4,
  passthru: 8,
  source: 16,
};
export const IFLA_IPVLAN_MODE = 1;
export const IFLA_IPVLAN_FLAGS = 2;
export const IPVLAN_MODES: Record<string, number> = { l2: 0, l3: 1, l3s: 2 };

export const VETH_INFO_PEER = 1;

export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_TTL = 5;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_LOCAL6 = 17;
export const IFLA_VXLAN_UDP_CSUM = 18;
export const IFLA_VXLAN_UDP_ZERO_CSUM6_TX = 19;
export const IFLA_VXLAN_UDP_ZERO_CSUM6_RX = 20;

/** RFC 2863 operational states, as `ip` names them. */
export const OPERSTATES = [
  "UNKNOWN",
  "NOTPRESENT",
  "DOWN",
  "LOWERLAYERDOWN",
  "TESTING",
  "DORMANT",
  "UP",
];

// ---- addresses (linux/if_addr.h) ----

export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_FLAGS = 8;
export const IFA_F_NODAD = 0x02;
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_TENTATIVE = 0x40;
export const IFA_F_PERMANENT = 0x80;
export const IFA_F_NOPREFIXROUTE = 0x200;

// ---- routes (linux/rtnetlink.h) ----

export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_METRICS = 8;
export const RTA_TABLE = 15;
export const RTAX_MTU = 2;
export const RTAX_ADVMSS = 8;
export const RTM_F_CLONED = 0x200;
export const RTNH_F_ONLINK = 0x4;

export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;

/** Route types (rtm_type) by `ip`'s names. */
export const RTN: Record<string, number> = {
  unspec: 0,
  unicast: 1,
  local: 2,
  broadcast: 3,
  anycast: 4,
  multicast: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
  throw: 9,
};
/** Route scopes (rtm_scope) by `ip`'s names. */
export const RT_SCOPE: Record<string, number> = {
  global: 0,
  site: 200,
  link: 253,
  host: 254,
  nowhere: 255,
};
/** Route protocols (rtm_protocol) `ip` names without /etc/iproute2/rt_protos. */
export const RTPROT: Record<string, number> = {
  unspec: 0,
  redirect: 1,
  kernel: 2,
  boot: 3,
  static: 4,
};

// ---- neighbours (linux/neighbour.h) ----

export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NDA_VLAN = 5;
export const NDA_PORT = 6;
export const NDA_VNI = 7;
export const NDA_MASTER = 9;

export const NUD_INCOMPLETE = 0x01;
export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_DELAY = 0x08;
export const NUD_PROBE = 0x10;
export const NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
/** Neighbour states by `ip`'s names, in the order `ip` lists them. */
export const NUD_NAMES: [number, string][] = [
  [NUD_INCOMPLETE, "INCOMPLETE"],
  [NUD_REACHABLE, "REACHABLE"],
  [NUD_STALE, "STALE"],
  [NUD_DELAY, "DELAY"],
  [NUD_PROBE, "PROBE"],
  [NUD_FAILED, "FAILED"],
  [NUD_NOARP, "NOARP"],
  [NUD_PERMANENT, "PERMANENT"],
];

export const NTF_USE = 0x01;
export const NTF_SELF = 0x02;
export const NTF_MASTER = 0x04;
export const NTF_PROXY = 0x08;
export const NTF_EXT_LEARNED = 0x10;
export const NTF_ROUTER = 0x80;

// ---- building messages ----

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Rounds up to the 4-byte netlink alignment. */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** An attribute to encode: its type and payload, or nested attributes. */
export type Attr = { type: number; data: Uint8Array } | {
  type: number;
  nested: Attr[];
  /** Set NLA_F_NESTED on the type (the kernel accepts nests without it, as ip sends them). */
  flag?: boolean;
};

/** Attribute constructors for the payload kinds rtnetlink uses. */
export const attr = {
  bytes: (type: number, data: Uint8Array): Attr => ({ type, data }),
  u8: (type: number, v: number): Attr => ({ type, data: Uint8Array.of(v) }),
  u16: (type: number, v: number): Attr => {
    const d = new Uint8Array(2);
    new DataView(d.buffer).setUint16(0, v, true);
    return { type, data: d };
  },
  /** A u16 in network byte order (ports). */
  be16: (type: number, v: number): Attr => {
    const d = new Uint8Array(2);
    new DataView(d.buffer).setUint16(0, v, false);
    return { type, data: d };
  },
  u32: (type: number, v: number): Attr => {
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, v, true);
    return { type, data: d };
  },
  /** A NUL-terminated string (names, kinds). */
  str: (type: number, s: string): Attr => {
    const b = encoder.encode(s);
    const d = new Uint8Array(b.length + 1);
    d.set(b);
    return { type, data: d };
  },
  nest: (type: number, nested: Attr[]): Attr => ({ type, nested }),
};

function attrSize(a: Attr): number {
  return 4 + ("data" in a ? a.data.length : attrsSize(a.nested));
}

function attrsSize(list: Attr[]): number {
  let n = 0;
  for (const a of list) n += align4(attrSize(a));
  return n;
}

function writeAttrs(buf: Uint8Array, off: number, list: Attr[]): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const a of list) {
    const len = attrSize(a);
    dv.setUint16(off, len, true);
    const nestedFlag = "nested" in a && a.flag ? NLA_F_NESTED : 0;
    dv.setUint16(off + 2, a.type | nestedFlag, true);
    if ("data" in a) buf.set(a.data, off + 4);
    else writeAttrs(buf, off + 4, a.nested);
    off += align4(len);
  }
  return off;
}

/** Encodes attributes alone (a VETH_INFO_PEER payload starts with an ifinfomsg, then these). */
export function encodeAttrs(list: Attr[]): Uint8Array {
  const buf = new Uint8Array(attrsSize(list));
  writeAttrs(buf, 0, list);
  return buf;
}

/** One request: message type, flags, the family header's bytes and the attributes. */
export interface Request {
  type: number;
  flags: number;
  header: Uint8Array;
  attrs: Attr[];
}

/** Encodes a whole message: nlmsghdr (with `seq`, port id 0: the kernel) + header + attributes. */
export function encodeMessage(req: Request, seq: number): Uint8Array {
  const hlen = align4(req.header.length);
  const len = 16 + hlen + attrsSize(req.attrs);
  const buf = new Uint8Array(len);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, len, true);
  dv.setUint16(4, req.type, true);
  dv.setUint16(6, req.flags, true);
  dv.setUint32(8, seq >>> 0, true);
  dv.setUint32(12, 0, true);
  buf.set(req.header, 16);
  writeAttrs(buf, 16 + hlen, req.attrs);
  return buf;
}

/** struct ifinfomsg: family, type, index, flags, change (16 bytes). */
export function ifinfomsg(
  o: { family?: number; type?: number; index?: number; flags?: number; change?: number } = {},
): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  b[0] = o.family ?? AF_UNSPEC;
  dv.setUint16(2, o.type ?? 0, true);
  dv.setInt32(4, o.index ?? 0, true);
  dv.setUint32(8, o.flags ?? 0, true);
  dv.setUint32(12, o.change ?? 0, true);
  return b;
}

/** struct ifaddrmsg: family, prefixlen, flags, scope, index (8 bytes). */
export function ifaddrmsg(
  o: { family: number; prefixlen?: number; flags?: number; scope?: number; index?: number },
): Uint8Array {
  const b = new Uint8Array(8);
  b[0] = o.family;
  b[1] = o.prefixlen ?? 0;
  b[2] = o.flags ?? 0;
  b[3] = o.scope ?? 0;
  new DataView(b.buffer).setUint32(4, o.index ?? 0, true);
  return b;
}

/** struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (12 bytes). */
export function rtmsg(o: {
  family: number;
  dstLen?: number;
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  flags?: number;
}): Uint8Array {
  const b = new Uint8Array(12);
  b[0] = o.family;
  b[1] = o.dstLen ?? 0;
  b[4] = o.table ?? 0;
  b[5] = o.protocol ?? 0;
  b[6] = o.scope ?? 0;
  b[7] = o.type ?? 0;
  new DataView(b.buffer).setUint32(8, o.flags ?? 0, true);
  return b;
}

/** struct ndmsg: family, ifindex, state, flags, type (12 bytes). */
export function ndmsg(
  o: { family: number; index?: number; state?: number; flags?: number; type?: number },
): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[0] = o.family;
  dv.setInt32(4, o.index ?? 0, true);
  dv.setUint16(8, o.state ?? 0, true);
  b[10] = o.flags ?? 0;
  b[11] = o.type ?? 0;
  return b;
}

// ---- reading messages ----

/** One message as received. `body` is everything after the nlmsghdr. */
export interface Message {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  body: Uint8Array;
}

/** Splits a datagram into its messages; a truncated tail is an error. */
export function decodeMessages(buf: Uint8Array): Message[] {
  const out: Message[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + 16 <= buf.length) {
    const len = dv.getUint32(off, true);
    if (len < 16 || off + len > buf.length) {
      throw new RangeError(`netlink: bad message length ${len} at ${off} of ${buf.length}`);
    }
    out.push({
      type: dv.getUint16(off + 4, true),
      flags: dv.getUint16(off + 6, true),
      seq: dv.getUint32(off + 8, true),
      pid: dv.getUint32(off + 12, true),
      body: buf.subarray(off + 16, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Decoded attributes: payload by type (the last one of a type wins, as in the kernel). */
export class Attrs {
  readonly #map = new Map<number, Uint8Array>();

  constructor(buf: Uint8Array) {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let off = 0;
    while (off + 4 <= buf.length) {
      const len = dv.getUint16(off, true);
      if (len < 4 || off + len > buf.length) break;
      this.#map.set(dv.getUint16(off + 2, true) & NLA_TYPE_MASK, buf.subarray(off + 4, off + len));
      off += align4(len);
    }
  }

  has(type: number): boolean {
    return this.#map.has(type);
  }
  types(): number[] {
    return [...this.#map.keys()];
  }
  bytes(type: number): Uint8Array | undefined {
    return this.#map.get(type);
  }
  u8(type: number): number | undefined {
    const b = this.#map.get(type);
    return b && b.length >= 1 ? b[0] : undefined;
  }
  u16(type: number): number | undefined {
    const b = this.#map.get(type);
    return b && b.length >= 2 ? new DataView(b.buffer, b.byteOffset).getUint16(0, true) : undefined;
  }
  be16(type: number): number | undefined {
    const b = this.#map.get(type);
    return b && b.length >= 2
      ? new DataView(b.buffer, b.byteOffset).getUint16(0, false)
      : undefined;
  }
  u32(type: number): number | undefined {
    const b = this.#map.get(type);
    return b && b.length >= 4 ? new DataView(b.buffer, b.byteOffset).getUint32(0, true) : undefined;
  }
  i32(type: number): number | undefined {
    const b = this.#map.get(type);
    return b && b.length >= 4 ? new DataView(b.buffer, b.byteOffset).getInt32(0, true) : undefined;
  }
  str(type: number): string | undefined {
    const b = this.#map.get(type);
    if (!b) return undefined;
    const end = b.indexOf(0);
    return decoder.decode(end < 0 ? b : b.subarray(0, end));
  }
  nested(type: number): Attrs | undefined {
    const b = this.#map.get(type);
    return b ? new Attrs(b) : undefined;
  }
}

/** The errno (positive) of an NLMSG_ERROR, 0 for an ACK, and the kernel's extended-ACK text. */
export function decodeError(m: Message): { errno: number; message?: string } {
  const dv = new DataView(m.body.buffer, m.body.byteOffset, m.body.byteLength);
  const errno = -dv.getInt32(0, true) | 0;
  if (!(m.flags & NLM_F_ACK_TLVS)) return { errno };
  // After the error code: the request's nlmsghdr (alone when capped), then the TLVs.
  const reqLen = dv.getUint32(4, true);
  const skip = 4 + (m.flags & NLM_F_CAPPED ? 16 : align4(reqLen));
  const msg = new Attrs(m.body.subarray(skip)).str(NLMSGERR_ATTR_MSG);
  return msg ? { errno, message: msg } : { errno };
}

// ---- addresses and MACs ----

/** Parses an IPv4 or IPv6 address (no prefix) to its bytes; throws TypeError when it is not one. */
export function ipBytes(text: string): Uint8Array {
  if (text.includes(":")) return ip6Bytes(text);
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
  }
  return Uint8Array.from(parts.map(Number));
}

function ip6Bytes(text: string): Uint8Array {
  const bad = () => new TypeError(`not an IP address: ${JSON.stringify(text)}`);
  let t = text;
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two more hex words.
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (v4) {
    const b = ipBytes(v4[1]!);
    const hi = ((b[0]! << 8) | b[1]!).toString(16), lo = ((b[2]! << 8) | b[3]!).toString(16);
    t = `${t.slice(0, -v4[1]!.length)}${hi}:${lo}`;
  }
  const halves = t.split("::");
  if (halves.length > 2) throw bad();
  const group = (s: string) => s === "" ? [] : s.split(":");
  const head = group(halves[0]!);
  const rest = halves.length === 2 ? group(halves[1]!) : [];
  for (const g of [...head, ...rest]) if (!/^[0-9a-f]{1,4}$/i.test(g)) throw bad();
  const fill = 8 - head.length - rest.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) throw bad();
  const all = [
    ...head.map((g) => parseInt(g, 16)),
    ...Array(fill).fill(0),
    ...rest.map((g) => parseInt(g, 16)),
  ];
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** Formats 4 or 16 address bytes as `ip` prints them (IPv6 compressed per RFC 5952). */
export function formatIpBytes(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  if (b.length !== 16) throw new TypeError(`an address has 4 or 16 bytes, not ${b.length}`);
  const w = Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!);
  // The longest run of two or more zero words becomes "::" (the first such run on a tie).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(w);
  return `${hex(w.slice(0, best))}::${hex(w.slice(best + bestLen))}`;
}

/** Splits `ADDR/LEN` (or a bare address: a host prefix) into bytes, prefix length and family. */
export function parsePrefix(text: string): { bytes: Uint8Array; len: number; family: number } {
  const [a, l, extra] = text.split("/");
  if (extra !== undefined) throw new TypeError(`not a prefix: ${JSON.stringify(text)}`);
  const bytes = ipBytes(a!);
  const max = bytes.length * 8;
  const len = l === undefined ? max : Number(l);
  if (l !== undefined && (!/^\d{1,3}$/.test(l) || len > max)) {
    throw new TypeError(`not a prefix length: ${JSON.stringify(text)}`);
  }
  return { bytes, len, family: bytes.length === 4 ? AF_INET : AF_INET6 };
}

/** Parses `aa:bb:cc:dd:ee:ff` to 6 bytes. */
export function macBytes(text: string): Uint8Array {
  const parts = text.split(":");
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-f]{1,2}$/i.test(p))) {
    throw new TypeError(`not a MAC address: ${JSON.stringify(text)}`);
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** Formats link-layer address bytes as lower-case colon-separated hex. */
export function formatMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}
