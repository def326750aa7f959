/**
 * host-gw: one kernel route per peer block, `<peer block> via <peer node address>`.
 *
 * ## Design history (why it works the way it does)
 *
 * - **No encapsulation.** Nodes that share a layer-2 segment need no tunnel: the peer's
 *   node address is an on-link next hop, so a plain route is the whole data path (as in
 *   flannel's host-gw). Full MTU, no per-packet cost. The price
 *   is the L2 requirement: a peer that is not on-link makes the kernel refuse the route
 *   ("Nexthop has invalid gateway"); that route is reported as failed, the others are
 *   still programmed. Other topologies are the vxlan backend's job (vxlan.ts; bgp is planned).
 * - **Routes are recognised by a protocol number of ohno's own, not by a state file.**
 *   Every route ohno makes carries `proto 111` ({@link OHNO_ROUTE_PROTOCOL}). Reading the
 *   table back tells exactly which routes are ohno's, after a restart, a crash, or a
 *   kill -9 in the middle of a batch: nothing to persist, nothing to get out of sync.
 *   111 (0x6f, "o") is not in iproute2's rt_protos and not used by the routing daemons
 *   we know (BIRD is 12, Calico's Felix 80, babel 42, bgp 186…). Routes with any other
 *   protocol are never changed or deleted: a foreign route for a destination ohno wants
 *   is a conflict to report, not to fight over (a route war between two controllers
 *   rewriting each other every 30 s is worse than a missing route with a loud warning).
 *   Deletes name the protocol (as `ip route del … proto 111` would), so the kernel itself
 *   refuses to delete a foreign route with the same destination.
 * - **Reconcile the whole table, not only events.** Peers that vanish while the agent is
 *   down send no event, and a person may delete a route by hand. flannel's host-gw keeps
 *   the routes it knows of in memory: it re-adds them periodically, but removes a route
 *   only on a lease-removal event, so the route of a node deleted while flannel was down
 *   stays forever (a problem its users report). So every reconcile reads the table,
 *   computes the wanted set from the peers and applies the difference (the pure
 *   `planRoutes`). {@link RouteSync} runs it at start, on every peer change and every
 *   resync period (30 s by default).
 * - **Route replace (`NLM_F_REPLACE`), never a plain add.** Replace is idempotent: no
 *   "File exists" after a restart or a race, and it fixes a route whose next hop changed
 *   in one step.
 * - **rtnetlink, not `ip` processes.** The table is read with one route dump (both
 *   families) and every change is one netlink request with its ACK, on one socket per
 *   agent ({@link agentRtnl}) in the node's namespace: tens of microseconds per route
 *   instead of a fork per batch. Each change succeeds or fails alone, so a route the
 *   kernel refuses is reported by its destination and costs the others nothing.
 * - **No `dev` in the route.** The kernel resolves the interface from the on-link next
 *   hop, so the backend needs no knowledge of interface names and follows an underlay
 *   address that moves.
 * - **IPv6 next hop = the peer's IPv6 node address** (global or ULA), not its link-local
 *   address: it is known from the datastore, stable, and resolved by neighbour discovery.
 * - **Everything runs in a given namespace** (the node's), which is how the lab runs many
 *   nodes on one machine and how the tests avoid the root namespace.
 * @module
 */

import { IpError, IpNotFoundError, NetnsError } from "../../netns/errors.ts";
import type { Netns } from "../../netns/netns.ts";
import { Rtnl } from "../../netns/netlink/rtnl.ts";
import { compareRoutes, kernelRouteOf, planRoutes, wantedRoutes } from "./diff.ts";
import type {
  Backend,
  FailedRoute,
  KernelRoute,
  ReconcileReport,
  RoutingState,
  SkippedBlock,
  WantedRoute,
} from "./types.ts";

/** The route protocol number that marks ohno's routes (`ip route … proto 111`). */
export const OHNO_ROUTE_PROTOCOL = 111;

export interface HostGwOptions {
  /** Program routes in this namespace (the node's); default: the caller's. */
  netns?: Netns | undefined;
  /**
   * The rtnetlink socket to use (opened in `netns`). Default: the agent's own
   * ({@link agentRtnl}) without `netns`, else one opened for each reconcile and closed
   * after it (a socket kept open would keep a deleted namespace alive).
   */
  rtnl?: Rtnl | undefined;
  /** Protocol number of ohno's routes (default {@link OHNO_ROUTE_PROTOCOL}). */
  protocol?: number;
  /** Routing table: `main` (default), `local`, `default` or a number. */
  table?: string | number;
}

let shared: Rtnl | undefined;

/**
 * The agent's rtnetlink socket, in the namespace the process runs in (the node's),
 * opened on first use and kept for the life of the process: every backend of the agent
 * reads and writes the kernel through it.
 */
export function agentRtnl(): Rtnl {
  shared ??= Rtnl.open();
  return shared;
}

/** Runs `fn` with the socket `o` names (see {@link HostGwOptions.rtnl}). */
export async function withRtnl<T>(
  o: { netns?: Netns | undefined; rtnl?: Rtnl | undefined },
  fn: (rtnl: Rtnl) => T | Promise<T>,
): Promise<T> {
  if (o.rtnl) return await fn(o.rtnl);
  if (!o.netns) {
    const rtnl = agentRtnl();
    try {
      return await fn(rtnl);
    } catch (e) {
      // The socket itself failed (not the kernel refusing a request): the next call
      // starts over with a new one.
      if (e instanceof NetnsError && !(e instanceof IpError) && shared === rtnl) {
        shared = undefined;
        rtnl.close();
      }
      throw e;
    }
  }
  using rtnl = Rtnl.open(o.netns);
  return await fn(rtnl);
}

/** One change to the kernel and what it is about, for the failure report. */
export interface KernelOp {
  op: "replace" | "delete";
  /** What the change is about (a route's destination, a neighbour, an FDB entry). */
  dst: string;
  node?: string;
  via?: string;
  /** Makes the change: one netlink request. */
  run: (rtnl: Rtnl) => void;
}

/**
 * The kernel's errnos for a gateway that is not on any link of the node: ENETUNREACH (IPv4),
 * EHOSTUNREACH (IPv6). Every route change goes over rtnetlink, so the errno is always known;
 * the text beside it differs by family and kernel, and is only shown.
 */
const OFF_LINK_ERRNO = new Set([101, 113]);

/**
 * What a refused route means. A next hop the kernel calls invalid is, for host-gw, a peer
 * that is not on this node's L2 segment (another subnet behind a router): say so, and
 * what fixes it, rather than leave the kernel's terse "Nexthop has invalid gateway".
 */
function explainRouteFailure(
  c: { op: "replace" | "delete"; dst: string; node?: string; via?: string },
  stderr: string,
  /** The kernel's errno, when known. */
  errno?: number,
): Pick<FailedRoute, "reason" | "error"> {
  const offLink = errno !== undefined && OFF_LINK_ERRNO.has(errno);
  if (c.op === "replace" && c.via && offLink) {
    return {
      reason: "next-hop-unreachable",
      error: `next hop ${c.via}${
        c.node ? ` (node ${c.node})` : ""
      } is not on a link of this node: host-gw needs every node on one L2 segment; a node in another subnet needs backend vxlan (kernel: ${stderr})`,
    };
  }
  return { error: stderr };
}

const TABLES: Record<string, number> = { main: 254, local: 255, default: 253 };

function tableNumber(t: string | number | undefined): number {
  if (t === undefined) return 254;
  const n = typeof t === "number" ? t : /^\d+$/.test(t) ? Number(t) : TABLES[t];
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 0xffffffff) {
    throw new RangeError(`route table must be main, local, default or 1-4294967295, got ${t}`);
  }
  return n;
}

/** The host-gw backend. Stateless: every reconcile starts from what the kernel holds. */
export class HostGwBackend implements Backend {
  readonly type = "host-gw";
  readonly #netns: Netns | undefined;
  readonly #rtnl: Rtnl | undefined;
  readonly #protocol: number;
  readonly #table: number;
  readonly #own: string[];

  constructor(opts: HostGwOptions = {}) {
    const p = opts.protocol ?? OHNO_ROUTE_PROTOCOL;
    if (!Number.isInteger(p) || p < 5 || p > 255) {
      throw new RangeError(`route protocol must be 5-255, got ${p}`);
    }
    this.#netns = opts.netns;
    this.#rtnl = opts.rtnl;
    this.#protocol = p;
    this.#table = tableNumber(opts.table);
    this.#own = [String(p), protocolText(p)];
  }

  /** The routes of ohno's in the table now (both families). */
  ownedRoutes(): Promise<KernelRoute[]> {
    return this.#with((rtnl) => this.#read(rtnl, this.#protocol));
  }

  reconcile(state: RoutingState): Promise<ReconcileReport> {
    const { routes, skipped } = wantedRoutes(state);
    return this.#with((rtnl) => this.reconcileRoutes(routes, skipped, rtnl));
  }

  /**
   * Makes ohno's routes exactly `routes` (reported with `skipped`): the route half of
   * reconcile, also used by the vxlan backend (routes with `dev` go on-link through it),
   * through its socket when it gives one.
   */
  async reconcileRoutes(
    routes: readonly WantedRoute[],
    skipped: SkippedBlock[],
    rtnl?: Rtnl,
  ): Promise<ReconcileReport> {
    if (!rtnl) return await this.#with((r) => this.reconcileRoutes(routes, skipped, r));
    const kernel = this.#read(rtnl);
    const plan = planRoutes(routes, kernel, this.#own);
    const ops: KernelOp[] = [];
    // Deletes first: a stray duplicate goes before its replacement is written.
    for (const r of [...plan.delete].sort(compareRoutes)) ops.push(this.#delete(r));
    // A device named in routes (vxlan's) is looked up once, not once per route.
    const indexes = new Map<string, number>();
    const index = (dev: string) => {
      let i = indexes.get(dev);
      if (i === undefined) indexes.set(dev, i = rtnl.index(dev));
      return i;
    };
    for (const w of [...plan.add, ...plan.replace].sort(compareRoutes)) {
      ops.push(this.#replace(w, index));
    }
    const failed = applyKernelOps(ops, rtnl);
    const failedDst = new Set(failed.map((f) => `${f.op} ${f.dst}`));
    const ok = (w: WantedRoute) => !failedDst.has(`replace ${w.dst}`);
    const programmed = { 4: 0, 6: 0 };
    for (const w of [...plan.unchanged, ...plan.add, ...plan.replace]) {
      if (ok(w)) programmed[w.family]++;
    }
    // Deletes that failed leave their route in place.
    for (const r of plan.delete) if (failedDst.has(`delete ${r.dst}`)) programmed[r.family]++;
    return {
      added: plan.add.filter(ok),
      replaced: plan.replace.filter(ok),
      deleted: plan.delete.filter((r) => !failedDst.has(`delete ${r.dst}`)),
      unchanged: plan.unchanged.length,
      conflicts: plan.conflicts,
      skipped,
      failed,
      programmed,
    };
  }

  cleanup(): Promise<number> {
    return this.#with((rtnl) => {
      const mine = this.#read(rtnl, this.#protocol);
      const failed = applyKernelOps(mine.map((r) => this.#delete(r)), rtnl);
      if (failed.length) {
        throw new Error(
          `could not remove ${failed.length} of ohno's routes: ${
            failed.map((f) => `${f.dst}: ${f.error}`).join("; ")
          }`,
        );
      }
      return mine.length;
    });
  }

  #with<T>(fn: (rtnl: Rtnl) => T | Promise<T>): Promise<T> {
    return withRtnl({ netns: this.#netns, rtnl: this.#rtnl }, fn);
  }

  /** The table's routes (both families, one dump), of one protocol when asked. */
  #read(rtnl: Rtnl, protocol?: number): KernelRoute[] {
    const out: KernelRoute[] = [];
    for (const r of rtnl.routes({ table: this.#table, ...(protocol ? { protocol } : {}) })) {
      const k = kernelRouteOf(r.family, {
        dst: r.dst,
        ...(r.via !== undefined ? { gateway: r.via } : {}),
        ...(r.dev !== undefined ? { dev: r.dev } : {}),
        ...(r.metric !== undefined ? { metric: r.metric } : {}),
        protocol: protocolText(r.protocol),
        type: r.type,
      });
      if (k) out.push(k);
    }
    return out;
  }

  #replace(w: WantedRoute, index: (dev: string) => number): KernelOp {
    return {
      op: "replace",
      dst: w.dst,
      node: w.node,
      via: w.via,
      run: (rtnl) =>
        rtnl.routeReplace({
          dst: w.dst,
          via: w.via,
          ...(w.dev ? { dev: index(w.dev), onlink: true } : {}),
          protocol: this.#protocol,
          table: this.#table,
        }),
    };
  }

  #delete(r: KernelRoute): KernelOp {
    return {
      op: "delete",
      dst: r.dst,
      run: (rtnl) =>
        rtnl.routeDel({
          dst: r.dst,
          ...(r.type ? { type: r.type } : {}),
          ...(r.via ? { via: r.via } : {}),
          protocol: this.#protocol,
          metric: r.metric,
          table: this.#table,
        }),
    };
  }
}

/**
 * Makes each change (one request each; a refused one does not stop the others) and
 * returns what failed. A delete of something that is gone already is not a failure. An
 * error that is not the kernel refusing one change (the socket itself failed) throws.
 */
export function applyKernelOps(ops: readonly KernelOp[], rtnl: Rtnl): FailedRoute[] {
  const failed: FailedRoute[] = [];
  for (const c of ops) {
    try {
      c.run(rtnl);
    } catch (e) {
      if (!(e instanceof IpError)) throw e;
      // A route that vanished between read and delete is what we wanted anyway.
      if (c.op === "delete" && e instanceof IpNotFoundError) continue;
      const why = explainRouteFailure(c, e.stderr.trim() || e.message, e.errno);
      failed.push({
        op: c.op,
        dst: c.dst,
        ...(c.node ? { node: c.node } : {}),
        ...(c.via ? { via: c.via } : {}),
        ...(why.reason ? { reason: why.reason } : {}),
        error: why.error,
      });
    }
  }
  return failed;
}

/** iproute2's names of the protocol numbers it knows without an rt_protos file. */
const BUILTIN_PROTOCOLS: Record<number, string> = {
  0: "unspec",
  1: "redirect",
  2: "kernel",
  3: "boot",
  4: "static",
  8: "gated",
  9: "ra",
  10: "mrt",
  11: "zebra",
  12: "bird",
  13: "dnrouted",
  14: "xorp",
  15: "ntk",
  16: "dhcp",
  17: "mrouted",
  18: "keepalived",
  42: "babel",
  99: "openr",
  186: "bgp",
  187: "isis",
  188: "ospf",
  189: "rip",
  192: "eigrp",
};

const protocolTexts = new Map<number, string>();

/**
 * A route protocol as `ip` prints it: the name an administrator gave it in rt_protos, or
 * iproute2's own name, else the number (the text {@link KernelRoute.protocol} holds).
 */
export function protocolText(protocol: number): string {
  let t = protocolTexts.get(protocol);
  if (t === undefined) {
    t = protocolNames(protocol)[0] ?? BUILTIN_PROTOCOLS[protocol] ?? String(protocol);
    protocolTexts.set(protocol, t);
  }
  return t;
}

/**
 * Names an administrator gave the protocol number in iproute2's rt_protos files: `ip`
 * then prints the name instead of the number, and ohno must still know its routes.
 */
function protocolNames(protocol: number): string[] {
  const names: string[] = [];
  const files = ["/etc/iproute2/rt_protos", "/usr/share/iproute2/rt_protos"];
  for (const dir of ["/etc/iproute2/rt_protos.d", "/usr/share/iproute2/rt_protos.d"]) {
    try {
      for (const e of Deno.readDirSync(dir)) {
        if (e.name.endsWith(".conf")) files.push(`${dir}/${e.name}`);
      }
    } catch {
      // no such directory
    }
  }
  for (const f of files) {
    let text: string;
    try {
      text = Deno.readTextFileSync(f);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const m = /^\s*(0x[0-9a-f]+|\d+)\s+(\S+)/i.exec(line);
      if (m && Number(m[1]) === protocol && !names.includes(m[2]!)) names.push(m[2]!);
    }
  }
  return names;
}
