/**
 * Link requests (RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK) and the decoding of link messages.
 * Pure: names are resolved to indexes by the caller (a {@link Resolve} function).
 * @module
 */

import {
  ADDR_GEN_MODES,
  AF_INET6,
  type Attr,
  attr,
  Attrs,
  encodeAttrs,
  formatIpBytes,
  formatMac,
  IFF_LOWER_UP,
  IFF_PROMISC,
  IFF_UP,
  ifinfomsg,
  IFLA_ADDRESS,
  IFLA_AF_SPEC,
  IFLA_BRPORT_MODE,
  IFLA_EXT_MASK,
  IFLA_IFNAME,
  IFLA_INET6_ADDR_GEN_MODE,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_INFO_SLAVE_DATA,
  IFLA_INFO_SLAVE_KIND,
  IFLA_IPVLAN_FLAGS,
  IFLA_IPVLAN_MODE,
  IFLA_LINK,
  IFLA_LINK_NETNSID,
  IFLA_LINKINFO,
  IFLA_MACVLAN_MODE,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_OPERSTATE,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_TTL,
  IFLA_VXLAN_UDP_CSUM,
  IFLA_VXLAN_UDP_ZERO_CSUM6_RX,
  IFLA_VXLAN_UDP_ZERO_CSUM6_TX,
  ipBytes,
  IPVLAN_MODES,
  macBytes,
  MACVLAN_MODES,
  type Message,
  NLM_F_CREATE,
  NLM_F_EXCL,
  OPERSTATES,
  type Request,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  VETH_INFO_PEER,
} from "./codec.ts";

/** A link named or by index. */
export type LinkRef = string | number;
/** A namespace given as an open handle's fd (a {@link Netns}'s `fd`). */
export type NsFd = number;
/** Turns a link name into its index (the caller asks the kernel); an index passes through. */
export type Resolve = (link: LinkRef) => number;

/** What every new link may set. */
export interface LinkAddCommon {
  name: string;
  mtu?: number;
  mac?: string;
  /** Bring it up as it is created. */
  up?: boolean;
  /** Enslave it to this bridge. */
  master?: LinkRef;
  /** Create it directly in this namespace (fd of an open handle). */
  netnsFd?: NsFd;
}

/** A veth pair; the peer may be created directly in another namespace. */
export interface VethAdd extends LinkAddCommon {
  kind: "veth";
  peer: {
    name: string;
    /** As with ip, the peer's MTU is the kernel's default unless given. */
    mtu?: number;
    mac?: string;
    up?: boolean;
    /** Create the peer in this namespace (fd of an open handle): the pod's end. */
    netnsFd?: NsFd;
  };
}

export interface BridgeAdd extends LinkAddCommon {
  kind: "bridge";
}

export interface DummyAdd extends LinkAddCommon {
  kind: "dummy";
}

export interface VxlanAdd extends LinkAddCommon {
  kind: "vxlan";
  /** The VNI (1–16777215). */
  id: number;
  /** UDP destination port (the kernel's default is 8472; IANA's is 4789). */
  port?: number;
  /** Local underlay address (IPv4 or IPv6). */
  local?: string;
  /** Underlay device. */
  dev?: LinkRef;
  /** Source-MAC learning (the kernel's default is on; ohno turns it off). */
  learning?: boolean;
  ttl?: number;
  udpCsum?: boolean;
  udp6ZeroCsumTx?: boolean;
  udp6ZeroCsumRx?: boolean;
}

/** A macvlan on `link` (the lower device, named in the socket's namespace). */
export interface MacvlanAdd extends LinkAddCommon {
  kind: "macvlan";
  link: LinkRef;
  /** Default bridge. */
  mode?: "private" | "vepa" | "bridge" | "passthru" | "source";
}

/** An ipvlan on `link`. */
export interface IpvlanAdd extends LinkAddCommon {
  kind: "ipvlan";
  link: LinkRef;
  /** Default l2. */
  mode?: "l2" | "l3" | "l3s";
}

export type LinkAdd = VethAdd | BridgeAdd | DummyAdd | VxlanAdd | MacvlanAdd | IpvlanAdd;

/** The attributes of a new link, in the order `ip link add` sends them. */
function common(spec: LinkAdd, resolve: Resolve): Attr[] {
  const a: Attr[] = [];
  if (spec.mtu !== undefined) a.push(attr.u32(IFLA_MTU, spec.mtu));
  if (spec.mac !== undefined) a.push(attr.bytes(IFLA_ADDRESS, macBytes(spec.mac)));
  if (spec.master !== undefined) a.push(attr.u32(IFLA_MASTER, resolve(spec.master)));
  if (spec.kind === "macvlan" || spec.kind === "ipvlan") {
    a.push(attr.u32(IFLA_LINK, resolve(spec.link)));
  }
  a.push(attr.str(IFLA_IFNAME, spec.name));
  if (spec.netnsFd !== undefined) a.push(attr.u32(IFLA_NET_NS_FD, spec.netnsFd));
  return a;
}

function infoData(spec: LinkAdd, resolve: Resolve): Attr[] | undefined {
  switch (spec.kind) {
    case "veth": {
      const p = spec.peer;
      const pa: Attr[] = [attr.str(IFLA_IFNAME, p.name)];
      if (p.mtu !== undefined) pa.push(attr.u32(IFLA_MTU, p.mtu));
      if (p.mac !== undefined) pa.push(attr.bytes(IFLA_ADDRESS, macBytes(p.mac)));
      if (p.netnsFd !== undefined) pa.push(attr.u32(IFLA_NET_NS_FD, p.netnsFd));
      // The peer's payload is an ifinfomsg of its own, then its attributes.
      const head = ifinfomsg(p.up ? { flags: IFF_UP, change: IFF_UP } : {});
      const tail = encodeAttrs(pa);
      const data = new Uint8Array(head.length + tail.length);
      data.set(head);
      data.set(tail, head.length);
      return [attr.bytes(VETH_INFO_PEER, data)];
    }
    case "vxlan": {
      if (!Number.isInteger(spec.id) || spec.id < 1 || spec.id > 0xffffff) {
        throw new RangeError(`VXLAN id must be 1-16777215, got ${spec.id}`);
      }
      // In the order `ip link add … type vxlan` sends them.
      const a: Attr[] = [];
      if (spec.ttl !== undefined) a.push(attr.u8(IFLA_VXLAN_TTL, spec.ttl));
      if (spec.dev !== undefined) a.push(attr.u32(IFLA_VXLAN_LINK, resolve(spec.dev)));
      a.push(attr.u32(IFLA_VXLAN_ID, spec.id));
      if (spec.local !== undefined) {
        const b = ipBytes(spec.local);
        a.push(attr.bytes(b.length === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, b));
      }
      if (spec.learning !== undefined) a.push(attr.u8(IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0));
      if (spec.port !== undefined) a.push(attr.be16(IFLA_VXLAN_PORT, spec.port));
      if (spec.udpCsum !== undefined) a.push(attr.u8(IFLA_VXLAN_UDP_CSUM, spec.udpCsum ? 1 : 0));
      if (spec.udp6ZeroCsumTx !== undefined) {
        a.push(attr.u8(IFLA_VXLAN_UDP_ZERO_CSUM6_TX, spec.udp6ZeroCsumTx ? 1 : 0));
      }
      if (spec.udp6ZeroCsumRx !== undefined) {
        a.push(attr.u8(IFLA_VXLAN_UDP_ZERO_CSUM6_RX, spec.udp6ZeroCsumRx ? 1 : 0));
      }
      return a;
    }
    case "macvlan": {
      const mode = MACVLAN_MODES[spec.mode ?? "bridge"];
      if (mode === undefined) throw new TypeError(`unknown macvlan mode ${spec.mode}`);
      return [attr.u32(IFLA_MACVLAN_MODE, mode)];
    }
    case "ipvlan": {
      const mode = IPVLAN_MODES[spec.mode ?? "l2"];
      if (mode === undefined) throw new TypeError(`unknown ipvlan mode ${spec.mode}`);
      return [attr.u16(IFLA_IPVLAN_MODE, mode), attr.u16(IFLA_IPVLAN_FLAGS, 0)];
    }
    default:
      return undefined;
  }
}

/** `ip link add NAME … type KIND …`: fails with EEXIST when the name is taken. */
export function linkAddRequest(spec: LinkAdd, resolve: Resolve): Request {
  const data = infoData(spec, resolve);
  // The kind without a terminating NUL, as ip sends it (the kernel takes either).
  const info: Attr[] = [attr.bytes(IFLA_INFO_KIND, new TextEncoder().encode(spec.kind))];
  if (data) info.push(attr.nest(IFLA_INFO_DATA, data));
  return {
    type: RTM_NEWLINK,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    header: ifinfomsg(spec.up ? { flags: IFF_UP, change: IFF_UP } : {}),
    attrs: [...common(spec, resolve), attr.nest(IFLA_LINKINFO, info)],
  };
}

/** Changes to an existing link (`ip link set`). */
export interface LinkChange {
  up?: boolean;
  mtu?: number;
  mac?: string;
  /** Enslave to this bridge; null releases it (`nomaster`). */
  master?: LinkRef | null;
  /** Move it to this namespace (fd of an open handle). */
  netnsFd?: NsFd;
  /** Rename it (the link must be down). */
  name?: string;
  promisc?: boolean;
  /** Hairpin mode of a bridge port (`type bridge_slave hairpin on`). */
  hairpin?: boolean;
  /** How IPv6 link-local addresses are made; `none` makes none (`addrgenmode none`). */
  addrGenMode?: (typeof ADDR_GEN_MODES)[number];
}

/**
 * `ip link set`: the link by index, or by name when it is not being renamed (the kernel
 * looks a link up by IFLA_IFNAME when the index is 0).
 */
export function linkSetRequest(link: LinkRef, change: LinkChange, resolve: Resolve): Request {
  const a: Attr[] = [];
  let index = 0;
  if (typeof link === "number") index = link;
  else if (change.name !== undefined) index = resolve(link);
  else a.push(attr.str(IFLA_IFNAME, link));
  if (change.name !== undefined) a.push(attr.str(IFLA_IFNAME, change.name));
  if (change.mtu !== undefined) a.push(attr.u32(IFLA_MTU, change.mtu));
  if (change.mac !== undefined) a.push(attr.bytes(IFLA_ADDRESS, macBytes(change.mac)));
  if (change.master !== undefined) {
    a.push(attr.u32(IFLA_MASTER, change.master === null ? 0 : resolve(change.master)));
  }
  if (change.netnsFd !== undefined) a.push(attr.u32(IFLA_NET_NS_FD, change.netnsFd));
  if (change.hairpin !== undefined) {
    // As ip sends it: the kind is a label; the bridge reads the port's slave data.
    a.push(attr.nest(IFLA_LINKINFO, [
      attr.bytes(IFLA_INFO_KIND, new TextEncoder().encode("bridge_slave")),
      attr.nest(IFLA_INFO_SLAVE_DATA, [attr.u8(IFLA_BRPORT_MODE, change.hairpin ? 1 : 0)]),
    ]));
  }
  if (change.addrGenMode !== undefined) {
    const mode = ADDR_GEN_MODES.indexOf(change.addrGenMode);
    if (mode < 0) throw new TypeError(`unknown addrgenmode ${change.addrGenMode}`);
    a.push(attr.nest(IFLA_AF_SPEC, [
      attr.nest(AF_INET6, [attr.u8(IFLA_INET6_ADDR_GEN_MODE, mode)]),
    ]));
  }
  let flags = 0, mask = 0;
  if (change.up !== undefined) [flags, mask] = [change.up ? IFF_UP : 0, IFF_UP];
  if (change.promisc !== undefined) {
    flags |= change.promisc ? IFF_PROMISC : 0;
    mask |= IFF_PROMISC;
  }
  return {
    type: RTM_NEWLINK,
    flags: 0,
    header: ifinfomsg({ index, flags, change: mask }),
    attrs: a,
  };
}

function byRef(type: number, link: LinkRef, extra: Attr[] = []): Request {
  return typeof link === "number"
    ? { type, flags: 0, header: ifinfomsg({ index: link }), attrs: extra }
    : { type, flags: 0, header: ifinfomsg(), attrs: [attr.str(IFLA_IFNAME, link), ...extra] };
}

/** `ip link del`. */
export function linkDelRequest(link: LinkRef): Request {
  return byRef(RTM_DELLINK, link);
}

/** Leave out the statistics (most of a link message's bytes): RTEXT_FILTER_SKIP_STATS. */
const SKIP_STATS = attr.u32(IFLA_EXT_MASK, 1 << 3);

/** `ip link show dev LINK`: one link (ENODEV when it does not exist). */
export function linkGetRequest(link: LinkRef): Request {
  return byRef(RTM_GETLINK, link, [SKIP_STATS]);
}

/** `ip link show`: every link (a dump). */
export function linkDumpRequest(): Request {
  return { type: RTM_GETLINK, flags: 0, header: ifinfomsg(), attrs: [SKIP_STATS] };
}

/** VXLAN settings as the kernel reports them. */
export interface VxlanInfo {
  id?: number;
  port?: number;
  local?: string;
  link?: number;
  learning?: boolean;
  ttl?: number;
}

/** A link as a dump or get reports it. */
export interface Link {
  index: number;
  name: string;
  /** IFF_* flags (ip's flags list: UP, LOWER_UP, BROADCAST, …). */
  flags: number;
  up: boolean;
  lowerUp: boolean;
  operstate: string;
  mtu: number;
  /** The link-layer address (absent on links without one, e.g. ipip). */
  mac?: string;
  /** Index of the bridge it is enslaved to. */
  masterIndex?: number;
  /** Name of that bridge (filled in where the master is in the same answer). */
  master?: string;
  /** `veth`, `bridge`, `vxlan`, … (undefined for physical and loopback links). */
  kind?: string;
  /** `bridge` for a bridge port. */
  slaveKind?: string;
  /** The peer's index for a veth, the lower device for vlan/macvlan. */
  link?: number;
  /** Set when `link` is in another namespace (the peer of a pod's veth). */
  linkNetnsid?: number;
  promisc: boolean;
  /** A bridge port's hairpin mode. */
  hairpin?: boolean;
  /** `eui64`, `none`, … (absent without IPv6). */
  addrGenMode?: string;
  vxlan?: VxlanInfo;
  /** A macvlan's or ipvlan's mode (`bridge`, `l2`, …), as `ip -d` shows it. */
  mode?: string;
}

/** Decodes an RTM_NEWLINK message. */
export function decodeLink(m: Message): Link {
  const dv = new DataView(m.body.buffer, m.body.byteOffset, m.body.byteLength);
  const flags = dv.getUint32(8, true);
  const a = new Attrs(m.body.subarray(16));
  const l: Link = {
    index: dv.getInt32(4, true),
    name: a.str(IFLA_IFNAME) ?? "",
    flags,
    up: (flags & IFF_UP) !== 0,
    lowerUp: (flags & IFF_LOWER_UP) !== 0,
    promisc: (flags & IFF_PROMISC) !== 0,
    operstate: OPERSTATES[a.u8(IFLA_OPERSTATE) ?? 0] ?? "UNKNOWN",
    mtu: a.u32(IFLA_MTU) ?? 0,
  };
  const mac = a.bytes(IFLA_ADDRESS);
  if (mac && mac.length > 0) l.mac = formatMac(mac);
  const master = a.u32(IFLA_MASTER);
  if (master) l.masterIndex = master;
  const link = a.u32(IFLA_LINK);
  if (link !== undefined && link !== l.index) l.link = link;
  const nsid = a.i32(IFLA_LINK_NETNSID);
  if (nsid !== undefined) l.linkNetnsid = nsid;
  const info = a.nested(IFLA_LINKINFO);
  if (info) {
    const kind = info.str(IFLA_INFO_KIND);
    if (kind) l.kind = kind;
    const slave = info.str(IFLA_INFO_SLAVE_KIND);
    if (slave) l.slaveKind = slave;
    const port = info.nested(IFLA_INFO_SLAVE_DATA);
    const hairpin = slave === "bridge" ? port?.u8(IFLA_BRPORT_MODE) : undefined;
    if (hairpin !== undefined) l.hairpin = hairpin !== 0;
    const data = info.nested(IFLA_INFO_DATA);
    const mode = kind === "macvlan" || kind === "macvtap"
      ? data?.u32(IFLA_MACVLAN_MODE)
      : kind === "ipvlan" || kind === "ipvtap"
      ? data?.u16(IFLA_IPVLAN_MODE)
      : undefined;
    if (mode !== undefined) {
      const names = kind?.startsWith("macv") ? MACVLAN_MODES : IPVLAN_MODES;
      l.mode = Object.keys(names).find((k) => names[k] === mode) ?? String(mode);
    }
    if (kind === "vxlan" && data) {
      const v: VxlanInfo = {};
      const id = data.u32(IFLA_VXLAN_ID);
      if (id !== undefined) v.id = id;
      const port = data.be16(IFLA_VXLAN_PORT);
      if (port !== undefined) v.port = port;
      const local = data.bytes(IFLA_VXLAN_LOCAL) ?? data.bytes(IFLA_VXLAN_LOCAL6);
      if (local) v.local = formatIpBytes(local);
      const dev = data.u32(IFLA_VXLAN_LINK);
      if (dev) v.link = dev;
      const learning = data.u8(IFLA_VXLAN_LEARNING);
      if (learning !== undefined) v.learning = learning !== 0;
      const ttl = data.u8(IFLA_VXLAN_TTL);
      if (ttl !== undefined) v.ttl = ttl;
      l.vxlan = v;
    }
  }
  const gen = a.nested(IFLA_AF_SPEC)?.nested(AF_INET6)?.u8(IFLA_INET6_ADDR_GEN_MODE);
  if (gen !== undefined) l.addrGenMode = ADDR_GEN_MODES[gen] ?? String(gen);
  return l;
}

/** Fills in `master` names from the indexes of the same list. */
export function nameMasters(links: Link[]): Link[] {
  const names = new Map(links.map((l) => [l.index, l.name]));
  for (const l of links) {
    if (l.masterIndex !== undefined) {
      const n = names.get(l.masterIndex);
      if (n !== undefined) l.master = n;
    }
  }
  return links;
}
