/**
 * Pure routing logic, no I/O: peer events → the peer set → the routes wanted → the plan
 * (add, replace, delete) against the routes the kernel holds. Everything a backend does
 * to the kernel is decided here, so it is tested by feeding event lists and kernel
 * snapshots, without root.
 * @module
 */

import { type Cidr, formatCidr, formatIp, overlaps, parseCidr, parseIp } from "../../ipam/addr.ts";
import type {
  KernelRoute,
  Peer,
  RouteConflict,
  RoutingState,
  SkippedBlock,
  WantedRoute,
} from "./types.ts";

/** A change of the peer set, as a watch of the datastore reports it. */
export type PeerEvent =
  /** A node appeared or changed (its addresses, its blocks). */
  | { type: "put"; peer: Peer }
  /** A node is gone. */
  | { type: "delete"; node: string }
  /** The watch restarted: this is the whole set now. */
  | { type: "reset"; peers: Peer[] };

/**
 * Applies events in order to a peer set (keyed by node name) and returns the new set;
 * `changed` tells whether routing may need to change. The input is not modified.
 */
export function applyPeerEvents(
  peers: ReadonlyMap<string, Peer>,
  events: readonly PeerEvent[],
): { peers: Map<string, Peer>; changed: boolean } {
  const out = new Map(peers);
  let changed = false;
  for (const e of events) {
    if (e.type === "reset") {
      const next = new Map(e.peers.map((p) => [p.node, clonePeer(p)]));
      if (!samePeerSets(out, next)) changed = true;
      out.clear();
      for (const [k, v] of next) out.set(k, v);
    } else if (e.type === "put") {
      const old = out.get(e.peer.node);
      if (!old || !samePeer(old, e.peer)) changed = true;
      out.set(e.peer.node, clonePeer(e.peer));
    } else {
      if (out.delete(e.node)) changed = true;
    }
  }
  return { peers: out, changed };
}

function clonePeer(p: Peer): Peer {
  return {
    node: p.node,
    ips: [...p.ips],
    blocks: [...p.blocks],
    ...(p.backend ? { backend: structuredClone(p.backend) } : {}),
  };
}

function samePeer(a: Peer, b: Peer): boolean {
  const eq = (x: string[], y: string[]) =>
    x.length === y.length && [...x].sort().every((v, i) => v === [...y].sort()[i]);
  // Next-hop choice depends on the order of ips: compare them in order.
  return a.node === b.node && a.ips.join(",") === b.ips.join(",") && eq(a.blocks, b.blocks) &&
    JSON.stringify(a.backend ?? null) === JSON.stringify(b.backend ?? null);
}

function samePeerSets(a: ReadonlyMap<string, Peer>, b: ReadonlyMap<string, Peer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || !samePeer(v, w)) return false;
  }
  return true;
}

/**
 * Parsed addresses and CIDRs by their text, with their canonical spelling. The same
 * peers' and routes' strings come back on every reconcile, and parsing them was most of
 * a steady reconcile's cost (2 000 routes: ~60 % of it). Bounded: cleared when full.
 * Entries are never modified by callers.
 */
const MEMO_MAX = 50_000;
const ipMemo = new Map<string, { family: 4 | 6; value: bigint; text: string } | null>();
const cidrMemo = new Map<string, { cidr: Cidr; text: string } | null>();

function memo<T>(m: Map<string, T | null>, key: string, make: () => T): T | undefined {
  let v = m.get(key);
  if (v === undefined) {
    if (m.size >= MEMO_MAX) m.clear();
    try {
      v = make();
    } catch {
      v = null;
    }
    m.set(key, v);
  }
  return v ?? undefined;
}

/** An address, parsed, with its canonical text; undefined when it is not one. */
export function ipInfo(text: string): { family: 4 | 6; value: bigint; text: string } | undefined {
  return memo(ipMemo, text, () => {
    const ip = parseIp(text);
    return { family: ip.family, value: ip.value, text: formatIp(ip.family, ip.value) };
  });
}

/** A CIDR, parsed (network address, host bits cleared), with its canonical text. */
export function cidrInfo(text: string): { cidr: Cidr; text: string } | undefined {
  return memo(cidrMemo, text, () => {
    const cidr = parseCidr(text);
    return { cidr, text: formatCidr(cidr) };
  });
}

/** The canonical spelling of an address (`fd00:0::1` → `fd00::1`); other text unchanged. */
export function canonicalIp(text: string): string {
  return ipInfo(text)?.text ?? text;
}

function tryCidr(text: string): Cidr | undefined {
  return cidrInfo(text)?.cidr;
}

function firstIp(ips: readonly string[], family: 4 | 6): string | undefined {
  for (const t of ips) {
    const ip = ipInfo(t);
    if (ip?.family === family) return ip.text;
  }
  return undefined;
}

/**
 * A peer's blocks as parsed CIDRs (with their canonical text); a block that does not parse
 * is added to `skipped` as "not a CIDR". Every backend walks a peer's blocks this way.
 */
export function* peerCidrs(
  peer: Peer,
  skipped: SkippedBlock[],
): Generator<{ cidr: Cidr; text: string }> {
  for (const block of peer.blocks) {
    const info = cidrInfo(block);
    if (!info) {
      skipped.push({ node: peer.node, block, reason: "not a CIDR" });
      continue;
    }
    yield info;
  }
}
/**
 * The routes host-gw style routing wants: each block of each peer through the peer's
 * address of the block's family. Blocks that cannot be routed are reported, not
 * dropped silently: no node address of that family, a bad CIDR, overlap with a block of
 * this node, or the same block claimed by two peers (the first by node name wins).
 */
export function wantedRoutes(
  state: RoutingState,
): { routes: WantedRoute[]; skipped: SkippedBlock[] } {
  const routes: WantedRoute[] = [];
  const skipped: SkippedBlock[] = [];
  const localBlocks = state.local.blocks.map(tryCidr).filter((c): c is Cidr => c !== undefined);
  const byDst = new Map<string, WantedRoute>();
  const peers = [...state.peers].filter((p) => p.node !== state.local.node)
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  for (const peer of peers) {
    const via = { 4: firstIp(peer.ips, 4), 6: firstIp(peer.ips, 6) };
    for (const { cidr: c, text: dst } of peerCidrs(peer, skipped)) {
      const hop = via[c.family];
      if (!hop) {
        skipped.push({ node: peer.node, block: dst, reason: `node has no IPv${c.family} address` });
        continue;
      }
      const mine = localBlocks.find((l) => overlaps(l, c));
      if (mine) {
        skipped.push({
          node: peer.node,
          block: dst,
          reason: `overlaps ${formatCidr(mine)} of this node (${state.local.node})`,
        });
        continue;
      }
      const taken = byDst.get(dst);
      if (taken) {
        skipped.push({ node: peer.node, block: dst, reason: `also claimed by node ${taken.node}` });
        continue;
      }
      const r: WantedRoute = { family: c.family, dst, via: hop, node: peer.node };
      byDst.set(dst, r);
      routes.push(r);
    }
  }
  return { routes, skipped };
}

/** The metric `ip route replace` gives a route without one: 0 (IPv4), 1024 (IPv6). */
export function defaultMetric(family: 4 | 6): number {
  return family === 4 ? 0 : 1024;
}

/** What to do to the kernel. */
export interface RoutePlan {
  /** Routes to create (`ip route replace`). */
  add: WantedRoute[];
  /** Routes of ohno's to change (next hop differs): `ip route replace`. */
  replace: WantedRoute[];
  /** Routes of ohno's nobody wants any more (or stray duplicates): `ip route del … proto P`. */
  delete: KernelRoute[];
  /** Wanted routes whose destination a foreign route holds: left alone, reported. */
  conflicts: RouteConflict[];
  /** Wanted routes already right. */
  unchanged: WantedRoute[];
}

/**
 * Compares the wanted routes with the kernel's routes (one table) and plans the change.
 * A route is ohno's when its protocol is one of `ownProtocols` (the number, and a name
 * an administrator may have given it in rt_protos); every other route is foreign and
 * never changed or deleted.
 */
export function planRoutes(
  wanted: readonly WantedRoute[],
  kernel: readonly KernelRoute[],
  ownProtocols: readonly string[],
): RoutePlan {
  const plan: RoutePlan = { add: [], replace: [], delete: [], conflicts: [], unchanged: [] };
  const own = new Set(ownProtocols);
  const ours = new Map<string, KernelRoute[]>();
  const foreign = new Map<string, KernelRoute>();
  for (const r of kernel) {
    if (own.has(r.protocol)) {
      const list = ours.get(r.dst) ?? [];
      list.push(r);
      ours.set(r.dst, list);
    } else if (!foreign.has(r.dst)) {
      foreign.set(r.dst, r);
    }
  }
  const wantedDst = new Set<string>();
  for (const w of wanted) {
    wantedDst.add(w.dst);
    const f = foreign.get(w.dst);
    const mine = ours.get(w.dst) ?? [];
    if (f) {
      plan.conflicts.push({ route: w, foreign: f });
      // Whatever of ours sits beside a foreign route for the same destination goes.
      plan.delete.push(...mine);
      continue;
    }
    const metric = defaultMetric(w.family);
    const same = mine.find((r) => r.metric === metric);
    if (!same) plan.add.push(w);
    else if (
      same.via !== w.via || same.type !== undefined || (w.dev !== undefined && same.dev !== w.dev)
    ) plan.replace.push(w);
    else plan.unchanged.push(w);
    // Duplicates with another metric (someone else's hand, or an older ohno): remove.
    for (const r of mine) if (r.metric !== metric) plan.delete.push(r);
  }
  for (const [dst, list] of ours) {
    if (!wantedDst.has(dst)) plan.delete.push(...list);
  }
  return plan;
}

/**
 * Normalises one route of a dump (in the shape `ip -j route show` prints it; host-gw
 * feeds it netlink's) for {@link planRoutes}; undefined for entries that are not routes
 * of the family (e.g. unparsable destinations).
 */
export function kernelRouteOf(
  family: 4 | 6,
  r: {
    dst: string;
    gateway?: string;
    dev?: string;
    metric?: number;
    protocol?: string;
    type?: string;
  },
): KernelRoute | undefined {
  let dst = r.dst;
  if (dst === "default") dst = family === 4 ? "0.0.0.0/0" : "::/0";
  else if (!dst.includes("/")) dst = `${dst}/${family === 4 ? 32 : 128}`;
  const info = cidrInfo(dst);
  if (!info || info.cidr.family !== family) return undefined;
  const out: KernelRoute = {
    family,
    dst: info.text,
    metric: r.metric ?? 0,
    // ip omits the protocol only for "boot" when filtering by it; show it as the kernel does.
    protocol: r.protocol ?? "boot",
  };
  if (r.gateway) out.via = canonicalIp(r.gateway);
  if (r.dev) out.dev = r.dev;
  if (r.type && r.type !== "unicast") out.type = r.type;
  return out;
}

/** Sort order for stable reports and batches: family, then destination. */
export function compareRoutes(
  a: { family: number; dst: string },
  b: { family: number; dst: string },
) {
  return a.family - b.family || (a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : 0);
}
