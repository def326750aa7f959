/**
 * Route requests (RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE) and their decoding. Pure.
 * Defaults follow `ip route`: table main, protocol boot on add, scope link for a route
 * without a gateway, and on delete scope "nowhere" and protocol/type unset (match any).
 * @module
 */

import {
  AF_INET,
  AF_INET6,
  afOf,
  type Attr,
  attr,
  Attrs,
  formatIpBytes,
  ipBytes,
  type Message,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  parsePrefix,
  type Request,
  RT_SCOPE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_METRICS,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTAX_ADVMSS,
  RTAX_MTU,
  RTM_DELROUTE,
  RTM_F_CLONED,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  rtmsg,
  RTN,
  RTNH_F_ONLINK,
  RTPROT,
} from "./codec.ts";
import type { LinkRef, Resolve } from "./link.ts";

/** A route to add, replace or delete. */
export interface RouteSpec {
  /** `default` or `ADDR/LEN` (a bare address is a host route). */
  dst: string;
  /** For `default` without a gateway: the family (default 4). */
  family?: 4 | 6;
  /** The gateway. */
  via?: string;
  dev?: LinkRef;
  /** Number or ip's name (`boot`, `static`, `kernel`); default `boot` on add. */
  protocol?: number | string;
  /** Number or name (`global`, `link`, `host`); default link without a gateway, else global. */
  scope?: number | string;
  /** Default main (254). */
  table?: number;
  /** `unicast` (default), `blackhole`, `unreachable`, `local`, … */
  type?: string;
  metric?: number;
  /** Preferred source address. */
  src?: string;
  /** The gateway is on link even if no address says so. */
  onlink?: boolean;
  mtu?: number;
  advmss?: number;
}

function named(map: Record<string, number>, v: number | string | undefined, what: string) {
  if (v === undefined || typeof v === "number") return v;
  if (/^\d+$/.test(v)) return Number(v);
  const n = map[v];
  if (n === undefined) throw new TypeError(`unknown route ${what} ${JSON.stringify(v)}`);
  return n;
}

function build(spec: RouteSpec, resolve: Resolve, del: boolean): Omit<Request, "type" | "flags"> {
  const gw = spec.via !== undefined ? ipBytes(spec.via) : undefined;
  let family: number;
  let dst: Uint8Array | undefined;
  let dstLen = 0;
  if (spec.dst === "default") {
    family = gw ? (gw.length === 4 ? AF_INET : AF_INET6) : spec.family === 6 ? AF_INET6 : AF_INET;
  } else {
    const p = parsePrefix(spec.dst);
    family = p.family;
    dstLen = p.len;
    dst = p.bytes;
  }
  if (gw && (gw.length === 4) !== (family === AF_INET)) {
    throw new TypeError(`route ${spec.dst}: gateway ${spec.via} is of the other family`);
  }
  const type = named(RTN, spec.type, "type") ?? (del ? 0 : RTN.unicast!);
  const defaultScope = del
    ? RT_SCOPE.nowhere!
    : type === RTN.local
    ? RT_SCOPE.host!
    : (type === RTN.unicast && !gw)
    ? RT_SCOPE.link!
    : RT_SCOPE.global!;
  const table = spec.table ?? RT_TABLE_MAIN;
  // In the order `ip route` sends them (the output link last).
  const attrs: Attr[] = [];
  if (dst) attrs.push(attr.bytes(RTA_DST, dst));
  if (gw) attrs.push(attr.bytes(RTA_GATEWAY, gw));
  if (table > 255) attrs.push(attr.u32(RTA_TABLE, table));
  if (spec.metric !== undefined) attrs.push(attr.u32(RTA_PRIORITY, spec.metric));
  if (spec.src !== undefined) attrs.push(attr.bytes(RTA_PREFSRC, ipBytes(spec.src)));
  const metrics: Attr[] = [];
  if (spec.mtu !== undefined) metrics.push(attr.u32(RTAX_MTU, spec.mtu));
  if (spec.advmss !== undefined) metrics.push(attr.u32(RTAX_ADVMSS, spec.advmss));
  if (metrics.length) attrs.push(attr.nest(RTA_METRICS, metrics));
  if (spec.dev !== undefined) attrs.push(attr.u32(RTA_OIF, resolve(spec.dev)));
  return {
    header: rtmsg({
      family,
      dstLen,
      table: table > 255 ? 0 : table,
      protocol: named(RTPROT, spec.protocol, "protocol") ?? (del ? 0 : RTPROT.boot!),
      scope: named(RT_SCOPE, spec.scope, "scope") ?? defaultScope,
      type,
      flags: spec.onlink ? RTNH_F_ONLINK : 0,
    }),
    attrs,
  };
}

/** `ip route replace …`: creates the route or replaces the one with the same key. */
export function routeReplaceRequest(spec: RouteSpec, resolve: Resolve): Request {
  return {
    type: RTM_NEWROUTE,
    flags: NLM_F_CREATE | NLM_F_REPLACE,
    ...build(spec, resolve, false),
  };
}

/** `ip route del …`: ESRCH when no route matches. */
export function routeDelRequest(spec: RouteSpec, resolve: Resolve): Request {
  return { type: RTM_DELROUTE, flags: 0, ...build(spec, resolve, true) };
}

/** `ip route show`: a dump of every table of `family` (filtered by the caller). */
export function routeDumpRequest(family?: 4 | 6): Request {
  const f = afOf(family);
  return { type: RTM_GETROUTE, flags: 0, header: rtmsg({ family: f }), attrs: [] };
}

/** A route as a dump reports it. */
export interface Route {
  family: 4 | 6;
  /** `default`, a host address, or `ADDR/LEN` (as `ip -j route` prints it). */
  dst: string;
  via?: string;
  /** The output link's index. */
  oif?: number;
  /** Its name (filled in by the caller). */
  dev?: string;
  protocol: number;
  scope: number;
  table: number;
  /** ip's name: `unicast`, `local`, `blackhole`, … */
  type: string;
  metric?: number;
  src?: string;
  onlink: boolean;
  mtu?: number;
  advmss?: number;
  /** A cached (cloned) entry, not a configured route. */
  cloned: boolean;
}

const TYPE_NAMES = new Map(Object.entries(RTN).map(([k, v]) => [v, k]));

/** Decodes an RTM_NEWROUTE message. */
export function decodeRoute(m: Message): Route {
  const b = m.body;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const a = new Attrs(b.subarray(12));
  const family = b[0] === AF_INET ? 4 : 6;
  const dstLen = b[1]!;
  const dstBytes = a.bytes(RTA_DST);
  const full = family === 4 ? 32 : 128;
  const dst = dstLen === 0
    ? "default"
    : `${formatIpBytes(dstBytes!)}${dstLen === full ? "" : `/${dstLen}`}`;
  const flags = dv.getUint32(8, true);
  const r: Route = {
    family,
    dst,
    protocol: b[5]!,
    scope: b[6]!,
    table: a.u32(RTA_TABLE) ?? b[4]!,
    type: TYPE_NAMES.get(b[7]!) ?? String(b[7]),
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    cloned: (flags & RTM_F_CLONED) !== 0,
  };
  const gw = a.bytes(RTA_GATEWAY);
  if (gw) r.via = formatIpBytes(gw);
  const oif = a.u32(RTA_OIF);
  if (oif !== undefined) r.oif = oif;
  const metric = a.u32(RTA_PRIORITY);
  if (metric !== undefined) r.metric = metric;
  const src = a.bytes(RTA_PREFSRC);
  if (src) r.src = formatIpBytes(src);
  const metrics = a.nested(RTA_METRICS);
  const mtu = metrics?.u32(RTAX_MTU);
  if (mtu !== undefined) r.mtu = mtu;
  const advmss = metrics?.u32(RTAX_ADVMSS);
  if (advmss !== undefined) r.advmss = advmss;
  return r;
}
