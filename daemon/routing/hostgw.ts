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
 *   Deletes name the protocol (`ip route del … proto 111`), so the kernel itself refuses
 *   to delete a foreign route with the same destination.
 * - **Reconcile the whole table, not only events.** Peers that vanish while the agent is
 *   down send no event, and a person may delete a route by hand. flannel's host-gw keeps
 *   the routes it knows of in memory: it re-adds them periodically, but removes a route
 *   only on a lease-removal event, so the route of a node deleted while flannel was down
 *   stays forever (a problem its users report). So every reconcile reads the table,
 *   computes the wanted set from the peers and applies the difference (the pure
 *   `planRoutes`). {@link RouteSync} runs it at start, on every peer change and every
 *   resync period (30 s by default).
 * - **`ip route replace`, never `add`.** Replace is idempotent: no "File exists" after a
 *   restart or a race, and it fixes a route whose next hop changed in one step.
 * - **One `ip -batch` per reconcile** (plus one `ip -j route show` per family): three
 *   forks whatever the cluster size. A command the kernel refuses stops the batch; the
 *   rest is re-sent after it, so one bad peer costs one extra fork, not the others' routes.
 * - **No `dev` in the route.** The kernel resolves the interface from the on-link next
 *   hop, so the backend needs no knowledge of interface names and follows an underlay
 *   address that moves.
 * - **IPv6 next hop = the peer's IPv6 node address** (global or ULA), not its link-local
 *   address: it is known from the datastore, stable, and resolved by neighbour discovery.
 * - **Everything runs in a given namespace** (the node's), which is how the lab runs many
 *   nodes on one machine and how the tests avoid the root namespace.
 * @module
 */

import {
  IpBatch,
  IpError,
  ipJson,
  IpNotFoundError,
  type IpRoute,
  type Netns,
} from "../../netns/mod.ts";
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
  /** Protocol number of ohno's routes (default {@link OHNO_ROUTE_PROTOCOL}). */
  protocol?: number;
  /** Routing table (default `main`). */
  table?: string;
}

/** One `ip` (or `bridge`) command and what it is about, for the failure report. */
export interface IpCommand {
  args: string[];
  op: "replace" | "delete";
  /** What the command is about (a route's destination, a neighbour, an FDB entry). */
  dst: string;
  node?: string;
  via?: string;
}
type Command = IpCommand;

/** The kernel's words for a gateway that is not on any link of the node. */
const OFF_LINK = /invalid gateway|Network is unreachable|No route to host/i;

/**
 * What a refused route means. A next hop the kernel calls invalid is, for host-gw, a peer
 * that is not on this node's L2 segment (another subnet behind a router): say so, and
 * what fixes it, rather than leave the kernel's terse "Nexthop has invalid gateway".
 */
function explainRouteFailure(
  c: { op: "replace" | "delete"; dst: string; node?: string; via?: string },
  stderr: string,
): Pick<FailedRoute, "reason" | "error"> {
  if (c.op === "replace" && c.via && OFF_LINK.test(stderr)) {
    return {
      reason: "next-hop-unreachable",
      error: `next hop ${c.via}${
        c.node ? ` (node ${c.node})` : ""
      } is not on a link of this node: host-gw needs every node on one L2 segment; a node in another subnet needs backend vxlan (kernel: ${stderr})`,
    };
  }
  return { error: stderr };
}

/** The host-gw backend. Stateless: every reconcile starts from what the kernel holds. */
export class HostGwBackend implements Backend {
  readonly type = "host-gw";
  readonly #netns: Netns | undefined;
  readonly #protocol: string;
  readonly #table: string;
  readonly #own: string[];

  constructor(opts: HostGwOptions = {}) {
    const p = opts.protocol ?? OHNO_ROUTE_PROTOCOL;
    if (!Number.isInteger(p) || p < 5 || p > 255) {
      throw new RangeError(`route protocol must be 5-255, got ${p}`);
    }
    this.#netns = opts.netns;
    this.#protocol = String(p);
    this.#table = opts.table ?? "main";
    this.#own = [this.#protocol, ...protocolNames(p)];
  }

  /** The routes of ohno's in the table now (both families). */
  async ownedRoutes(): Promise<KernelRoute[]> {
    const own = new Set(this.#own);
    return (await this.#read()).filter((r) => own.has(r.protocol));
  }

  reconcile(state: RoutingState): Promise<ReconcileReport> {
    const { routes, skipped } = wantedRoutes(state);
    return this.reconcileRoutes(routes, skipped);
  }

  /**
   * Makes ohno's routes exactly `routes` (reported with `skipped`): the route half of
   * reconcile, also used by the vxlan backend (routes with `dev` go on-link through it).
   */
  async reconcileRoutes(
    routes: readonly WantedRoute[],
    skipped: SkippedBlock[],
  ): Promise<ReconcileReport> {
    const kernel = await this.#read();
    const plan = planRoutes(routes, kernel, this.#own);
    const cmds: Command[] = [];
    // Deletes first: a stray duplicate goes before its replacement is written.
    for (const r of [...plan.delete].sort(compareRoutes)) cmds.push(this.#delete(r));
    for (const w of [...plan.add, ...plan.replace].sort(compareRoutes)) cmds.push(this.#replace(w));
    const failed = await runIpCommands(cmds, this.#netns);
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

  async cleanup(): Promise<number> {
    const mine = await this.ownedRoutes();
    const failed = await runIpCommands(mine.map((r) => this.#delete(r)), this.#netns);
    if (failed.length) {
      throw new Error(
        `could not remove ${failed.length} of ohno's routes: ${
          failed.map((f) => `${f.dst}: ${f.error}`).join("; ")
        }`,
      );
    }
    return mine.length;
  }

  async #read(): Promise<KernelRoute[]> {
    const opts = { netns: this.#netns };
    const [v4, v6] = await Promise.all([
      ipJson<IpRoute[]>(["-4", "route", "show", "table", this.#table], opts),
      ipJson<IpRoute[]>(["-6", "route", "show", "table", this.#table], opts),
    ]);
    const out: KernelRoute[] = [];
    for (const r of v4) {
      const k = kernelRouteOf(4, r);
      if (k) out.push(k);
    }
    for (const r of v6) {
      const k = kernelRouteOf(6, r);
      if (k) out.push(k);
    }
    return out;
  }

  #replace(w: WantedRoute): Command {
    return {
      op: "replace",
      dst: w.dst,
      node: w.node,
      via: w.via,
      args: [
        "route",
        "replace",
        w.dst,
        "via",
        w.via,
        ...(w.dev ? ["dev", w.dev, "onlink"] : []),
        "proto",
        this.#protocol,
        "table",
        this.#table,
      ],
    };
  }

  #delete(r: KernelRoute): Command {
    const args = ["route", "del"];
    if (r.type) args.push(r.type);
    args.push(r.dst);
    if (r.via) args.push("via", r.via);
    args.push("proto", this.#protocol, "metric", String(r.metric), "table", this.#table);
    return { op: "delete", dst: r.dst, args };
  }
}

/**
 * Runs `ip` commands in as few batches as failures allow (a refused command stops a
 * batch; the rest is re-sent after it); returns what failed. A delete of something that
 * is gone already is not a failure.
 */
export async function runIpCommands(
  cmds: IpCommand[],
  netns: Netns | undefined,
  /** `ip` (default), or `bridge` for FDB entries: the same batch syntax and errors. */
  bin?: string,
): Promise<FailedRoute[]> {
  const failed: FailedRoute[] = [];
  let start = 0;
  while (start < cmds.length) {
    const batch = new IpBatch(bin);
    for (const c of cmds.slice(start)) batch.add(...c.args);
    try {
      await batch.run({ netns });
      break;
    } catch (e) {
      if (!(e instanceof IpError)) throw e;
      const at = cmds.findIndex((c, i) => i >= start && c.args.join(" ") === e.command);
      if (at < 0) throw e; // not one command's fault: ip itself failed
      const c = cmds[at]!;
      // A route that vanished between read and delete is what we wanted anyway.
      if (!(c.op === "delete" && e instanceof IpNotFoundError)) {
        const why = explainRouteFailure(c, e.stderr.trim() || e.message);
        failed.push({
          op: c.op,
          dst: c.dst,
          ...(c.node ? { node: c.node } : {}),
          ...(c.via ? { via: c.via } : {}),
          ...(why.reason ? { reason: why.reason } : {}),
          error: why.error,
        });
      }
      start = at + 1;
    }
  }
  return failed;
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
