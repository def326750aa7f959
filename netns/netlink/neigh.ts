/**
 * Neighbour and bridge FDB requests (RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH) and their
 * decoding. Pure. An FDB entry is a neighbour of family AF_BRIDGE keyed by MAC; on a VXLAN
 * device (`self`) it carries the remote VTEP in NDA_DST.
 * @module
 */

import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  afOf,
  type Attr,
  attr,
  Attrs,
  formatIpBytes,
  formatMac,
  ipBytes,
  macBytes,
  type Message,
  NDA_DST,
  NDA_LLADDR,
  NDA_MASTER,
  NDA_PORT,
  NDA_VLAN,
  NDA_VNI,
  ndmsg,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NTF_EXT_LEARNED,
  NTF_MASTER,
  NTF_ROUTER,
  NTF_SELF,
  NUD_NAMES,
  NUD_NOARP,
  NUD_PERMANENT,
  NUD_REACHABLE,
  NUD_STALE,
  type Request,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from "./codec.ts";

const STATES: Record<string, number> = {
  permanent: NUD_PERMANENT,
  reachable: NUD_REACHABLE,
  stale: NUD_STALE,
  noarp: NUD_NOARP,
};

/** `ip neigh replace IP lladdr MAC dev INDEX nud STATE` (default permanent). */
export function neighReplaceRequest(
  index: number,
  spec: { ip: string; mac: string; state?: "permanent" | "reachable" | "stale" | "noarp" },
): Request {
  const dst = ipBytes(spec.ip);
  return {
    type: RTM_NEWNEIGH,
    flags: NLM_F_CREATE | NLM_F_REPLACE,
    header: ndmsg({
      family: dst.length === 4 ? AF_INET : AF_INET6,
      index,
      state: STATES[spec.state ?? "permanent"] ?? NUD_PERMANENT,
    }),
    attrs: [attr.bytes(NDA_DST, dst), attr.bytes(NDA_LLADDR, macBytes(spec.mac))],
  };
}

/** `ip neigh del IP dev INDEX`: ENOENT when there is no such entry. */
export function neighDelRequest(index: number, ip: string): Request {
  const dst = ipBytes(ip);
  return {
    type: RTM_DELNEIGH,
    flags: 0,
    header: ndmsg({ family: dst.length === 4 ? AF_INET : AF_INET6, index }),
    attrs: [attr.bytes(NDA_DST, dst)],
  };
}

/** `ip neigh show`: a dump of `family` (4, 6, or both; the caller drops FDB entries). */
export function neighDumpRequest(family?: 4 | 6): Request {
  const f = afOf(family);
  return { type: RTM_GETNEIGH, flags: 0, header: ndmsg({ family: f }), attrs: [] };
}

/** One FDB entry to write (`bridge fdb replace|append MAC dev DEV [dst IP] [self] [permanent]`). */
export interface FdbSpec {
  mac: string;
  /** Remote VTEP (VXLAN devices). */
  dst?: string;
  vni?: number;
  port?: number;
  vlan?: number;
  /** The entry lives in the device itself (`self`, the default unless `master`). */
  self?: boolean;
  /** The entry lives in the bridge the device is a port of (`master`). */
  master?: boolean;
  /** Permanent (default); false leaves bridge's default state, `static` (NUD_NOARP). */
  permanent?: boolean;
}

function fdbAttrs(spec: FdbSpec): Attr[] {
  const a: Attr[] = [attr.bytes(NDA_LLADDR, macBytes(spec.mac))];
  if (spec.dst !== undefined) a.push(attr.bytes(NDA_DST, ipBytes(spec.dst)));
  if (spec.vlan !== undefined) a.push(attr.u16(NDA_VLAN, spec.vlan));
  if (spec.port !== undefined) a.push(attr.be16(NDA_PORT, spec.port));
  if (spec.vni !== undefined) a.push(attr.u32(NDA_VNI, spec.vni));
  return a;
}

function fdbFlags(spec: FdbSpec): number {
  let f = 0;
  if (spec.self) f |= NTF_SELF;
  if (spec.master) f |= NTF_MASTER;
  return f || NTF_SELF;
}

/**
 * `bridge fdb replace` (or `append`: another destination for the same MAC, as the
 * all-zero MAC's flood list needs).
 */
export function fdbAddRequest(index: number, spec: FdbSpec, append = false): Request {
  return {
    type: RTM_NEWNEIGH,
    flags: NLM_F_CREATE | (append ? NLM_F_APPEND : NLM_F_REPLACE),
    header: ndmsg({
      family: AF_BRIDGE,
      index,
      // As bridge does: NOARP ("static"), plus PERMANENT unless told otherwise.
      state: NUD_NOARP | (spec.permanent === false ? 0 : NUD_PERMANENT),
      flags: fdbFlags(spec),
    }),
    attrs: fdbAttrs(spec),
  };
}

/** `bridge fdb del MAC dev DEV [dst IP]`. */
export function fdbDelRequest(index: number, spec: FdbSpec): Request {
  return {
    type: RTM_DELNEIGH,
    flags: 0,
    header: ndmsg({ family: AF_BRIDGE, index, flags: fdbFlags(spec) }),
    attrs: fdbAttrs(spec),
  };
}

/** `bridge fdb show`: every FDB entry (a dump). */
export function fdbDumpRequest(): Request {
  return { type: RTM_GETNEIGH, flags: 0, header: ndmsg({ family: AF_BRIDGE }), attrs: [] };
}

/** A neighbour or FDB entry as a dump reports it. */
export interface Neigh {
  /** 4, 6, or "bridge" for an FDB entry. */
  family: 4 | 6 | "bridge";
  index: number;
  /** Its link's name (filled in by the caller). */
  dev?: string;
  /** The neighbour's IP; for an FDB entry the remote VTEP, when it has one. */
  dst?: string;
  /** The link-layer address (the FDB entry's key). */
  mac?: string;
  /** NUD_* bits, and ip's names for them. */
  state: number;
  states: string[];
  /** NUD_PERMANENT: a static entry (`ip neigh … nud permanent`, `bridge fdb … permanent`). */
  permanent: boolean;
  /** NTF_* flags. */
  flags: number;
  self: boolean;
  master: boolean;
  router: boolean;
  externLearned: boolean;
  vlan?: number;
  vni?: number;
  port?: number;
  /** The bridge of a bridge-port FDB entry. */
  masterIndex?: number;
}

/** Decodes an RTM_NEWNEIGH message. */
export function decodeNeigh(m: Message): Neigh {
  const b = m.body;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const a = new Attrs(b.subarray(12));
  const state = dv.getUint16(8, true);
  const flags = b[10]!;
  const n: Neigh = {
    family: b[0] === AF_BRIDGE ? "bridge" : b[0] === AF_INET ? 4 : 6,
    index: dv.getInt32(4, true),
    state,
    states: NUD_NAMES.filter(([bit]) => state & bit).map(([, name]) => name),
    permanent: (state & NUD_PERMANENT) !== 0,
    flags,
    self: (flags & NTF_SELF) !== 0,
    master: (flags & NTF_MASTER) !== 0,
    router: (flags & NTF_ROUTER) !== 0,
    externLearned: (flags & NTF_EXT_LEARNED) !== 0,
  };
  const dst = a.bytes(NDA_DST);
  if (dst) n.dst = formatIpBytes(dst);
  const mac = a.bytes(NDA_LLADDR);
  if (mac) n.mac = formatMac(mac);
  const vlan = a.u16(NDA_VLAN);
  if (vlan !== undefined) n.vlan = vlan;
  const vni = a.u32(NDA_VNI);
  if (vni !== undefined) n.vni = vni;
  const port = a.be16(NDA_PORT);
  if (port !== undefined) n.port = port;
  const master = a.u32(NDA_MASTER);
  if (master !== undefined) n.masterIndex = master;
  return n;
}
