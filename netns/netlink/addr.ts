/**
 * Address requests (RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR) and their decoding. Pure.
 * @module
 */

import {
  AF_INET,
  afOf,
  type Attr,
  attr,
  Attrs,
  formatIpBytes,
  IFA_ADDRESS,
  IFA_F_DADFAILED,
  IFA_F_NODAD,
  IFA_F_NOPREFIXROUTE,
  IFA_F_PERMANENT,
  IFA_F_TENTATIVE,
  IFA_FLAGS,
  IFA_LABEL,
  IFA_LOCAL,
  ifaddrmsg,
  type Message,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  parsePrefix,
  type Request,
  RT_SCOPE,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from "./codec.ts";

/** Options of `ip addr add`. */
export interface AddrOptions {
  /** No duplicate address detection (IPv6): usable at once. */
  noDad?: boolean;
  /** No prefix route for the address's subnet. */
  noPrefixRoute?: boolean;
  /** `global` (default), `link`, `host` or a number. */
  scope?: string | number;
  /** Replace an existing address instead of failing with EEXIST (`ip addr replace`). */
  replace?: boolean;
}

function scopeNumber(s: string | number | undefined, fallback: number): number {
  if (s === undefined) return fallback;
  if (typeof s === "number") return s;
  const n = RT_SCOPE[s];
  if (n === undefined) throw new TypeError(`unknown scope ${JSON.stringify(s)}`);
  return n;
}

/** `ip addr add CIDR dev INDEX` (a bare address is a host prefix). */
export function addrAddRequest(index: number, cidr: string, opts: AddrOptions = {}): Request {
  const p = parsePrefix(cidr);
  let flags = 0;
  if (opts.noDad) flags |= IFA_F_NODAD;
  if (opts.noPrefixRoute) flags |= IFA_F_NOPREFIXROUTE;
  // As ip does: a loopback IPv4 address is host-scoped unless told otherwise.
  const scope = scopeNumber(opts.scope, p.family === AF_INET && p.bytes[0] === 127 ? 254 : 0);
  // As ip sends them: the flags (all 32 bits) in IFA_FLAGS between the two addresses.
  const attrs: Attr[] = [attr.bytes(IFA_LOCAL, p.bytes)];
  if (flags) attrs.push(attr.u32(IFA_FLAGS, flags));
  attrs.push(attr.bytes(IFA_ADDRESS, p.bytes));
  return {
    type: RTM_NEWADDR,
    flags: NLM_F_CREATE | (opts.replace ? NLM_F_REPLACE : NLM_F_EXCL),
    header: ifaddrmsg({ family: p.family, prefixlen: p.len, scope, index }),
    attrs,
  };
}

/** `ip addr del CIDR dev INDEX`: EADDRNOTAVAIL when the link has no such address. */
export function addrDelRequest(index: number, cidr: string): Request {
  const p = parsePrefix(cidr);
  return {
    type: RTM_DELADDR,
    flags: 0,
    header: ifaddrmsg({ family: p.family, prefixlen: p.len, index }),
    attrs: [attr.bytes(IFA_LOCAL, p.bytes), attr.bytes(IFA_ADDRESS, p.bytes)],
  };
}

/** `ip addr show`: every address of `family` (4, 6, or both). */
export function addrDumpRequest(family?: 4 | 6): Request {
  const f = afOf(family);
  return { type: RTM_GETADDR, flags: 0, header: ifaddrmsg({ family: f }), attrs: [] };
}

/** An address as a dump reports it. */
export interface Addr {
  family: 4 | 6;
  /** The link's index. */
  index: number;
  address: string;
  prefixlen: number;
  /** `global`, `link`, `host`, … (ip's names), or the number. */
  scope: string;
  /** IFA_F_* flags. */
  flags: number;
  permanent: boolean;
  tentative: boolean;
  dadfailed: boolean;
  noPrefixRoute: boolean;
  label?: string;
}

const SCOPE_NAMES = new Map(Object.entries(RT_SCOPE).map(([k, v]) => [v, k]));

/** Decodes an RTM_NEWADDR message. */
export function decodeAddr(m: Message): Addr {
  const b = m.body;
  const a = new Attrs(b.subarray(8));
  const flags = a.u32(IFA_FLAGS) ?? b[2]!;
  const addr = a.bytes(IFA_LOCAL) ?? a.bytes(IFA_ADDRESS) ??
    new Uint8Array(b[0] === AF_INET ? 4 : 16);
  const out: Addr = {
    family: b[0] === AF_INET ? 4 : 6,
    index: new DataView(b.buffer, b.byteOffset).getUint32(4, true),
    address: formatIpBytes(addr),
    prefixlen: b[1]!,
    scope: SCOPE_NAMES.get(b[3]!) ?? String(b[3]),
    flags,
    permanent: (flags & IFA_F_PERMANENT) !== 0,
    tentative: (flags & IFA_F_TENTATIVE) !== 0,
    dadfailed: (flags & IFA_F_DADFAILED) !== 0,
    noPrefixRoute: (flags & IFA_F_NOPREFIXROUTE) !== 0,
  };
  const label = a.str(IFA_LABEL);
  if (label !== undefined) out.label = label;
  return out;
}
