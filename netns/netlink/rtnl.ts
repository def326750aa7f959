/**
 * {@link Rtnl}: rtnetlink operations on one namespace, through one socket opened inside it.
 *
 * Each method is one request and its ACK (a name given for a link costs one more round
 * trip, RTM_GETLINK, to learn its index). Failures are the typed errors `ip` produces:
 * `IpExistsError` (EEXIST), `IpNotFoundError` (ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL),
 * `IpInvalidError`, `IpUnsupportedError`, else `IpError`; each carries the errno.
 *
 * @example
 * ```ts ignore
 * using host = Rtnl.open();
 * using pod = Netns.open("/var/run/netns/pod1");
 * host.linkAdd({ kind: "veth", name: "veth1", up: true, peer: { name: "eth0", netns: pod } });
 * using inPod = Rtnl.open(pod);
 * inPod.addrAdd("eth0", "10.0.0.2/24");
 * inPod.linkSet("eth0", { up: true });
 * inPod.routeReplace({ dst: "default", via: "10.0.0.1", dev: "eth0" });
 * ```
 * @module
 */

import type { Netns } from "../netns.ts";
import {
  type Addr,
  addrAddRequest,
  addrDelRequest,
  addrDumpRequest,
  type AddrOptions,
  decodeAddr,
} from "./addr.ts";
import { NLM_F_ECHO, RTM_NEWLINK } from "./codec.ts";
import {
  decodeLink,
  type Link,
  type LinkAdd,
  linkAddRequest,
  type LinkChange,
  linkDelRequest,
  linkDumpRequest,
  linkGetRequest,
  type LinkRef,
  linkSetRequest,
  nameMasters,
} from "./link.ts";
import {
  decodeNeigh,
  fdbAddRequest,
  fdbDelRequest,
  fdbDumpRequest,
  type FdbSpec,
  type Neigh,
  neighDelRequest,
  neighDumpRequest,
  neighReplaceRequest,
} from "./neigh.ts";
import {
  decodeRoute,
  type Route,
  routeDelRequest,
  routeDumpRequest,
  routeReplaceRequest,
  type RouteSpec,
} from "./route.ts";
import { netlinkError, NetlinkSocket } from "./socket.ts";
import { IpNotFoundError } from "../errors.ts";

/** A namespace for a link to be created in or moved to: an open handle. */
type NsArg = { netns?: Netns };

/** Omit over each member of a union. */
type DistOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** {@link LinkAdd} with namespaces as handles instead of fds. */
export type LinkAddSpec =
  & (
    | Omit<Extract<LinkAdd, { kind: "veth" }>, "netnsFd" | "peer"> & {
      peer: Omit<Extract<LinkAdd, { kind: "veth" }>["peer"], "netnsFd"> & NsArg;
    }
    | DistOmit<Exclude<LinkAdd, { kind: "veth" }>, "netnsFd">
  )
  & NsArg;

/** {@link LinkChange} with the namespace as a handle. */
export type LinkSetSpec = Omit<LinkChange, "netnsFd"> & NsArg;

/** Filters of the route dump: `ip route show [table T] [proto P] [dev D]`. */
export interface RouteFilter {
  family?: 4 | 6;
  /** Default main; `"all"` for every table. */
  table?: number | "all";
  protocol?: number;
  dev?: LinkRef;
  /** Keep cached (cloned) entries; default false, as `ip route show`. */
  cloned?: boolean;
}

function isNotFound(e: unknown): boolean {
  return e instanceof IpNotFoundError;
}

/** rtnetlink on one namespace. */
export class Rtnl implements Disposable {
  readonly #sock: NetlinkSocket;

  private constructor(sock: NetlinkSocket) {
    this.#sock = sock;
  }

  /** Opens a socket inside `netns` (default: the caller's namespace). */
  static open(netns?: Netns, opts: { timeoutMs?: number } = {}): Rtnl {
    return new Rtnl(NetlinkSocket.open(netns, opts));
  }

  get netns(): Netns | undefined {
    return this.#sock.netns;
  }

  /** The index of a link (an index passes through); `IpNotFoundError` when it does not exist. */
  index(link: LinkRef): number {
    if (typeof link === "number") return link;
    const m = this.#sock.request(linkGetRequest(link), `link show dev ${link}`);
    const msg = m.find((x) => x.type === RTM_NEWLINK);
    if (!msg) throw netlinkError(`link show dev ${link}`, 19, undefined, this.netns?.path);
    return decodeLink(msg).index;
  }

  #resolve = (link: LinkRef): number => this.index(link);

  // ---- links ----

  /**
   * Creates a link (`ip link add`): veth (the peer may go straight into another
   * namespace), bridge, dummy or vxlan. `IpExistsError` when the name is taken (in either
   * namespace for a veth's two ends). Returns the new link's index in this socket's
   * namespace (-1 when it was created in another one), so that what follows can name it
   * without a lookup.
   */
  linkAdd(spec: LinkAddSpec): number {
    const { netns, ...rest } = spec;
    const s = { ...rest, ...(netns ? { netnsFd: netns.fd } : {}) } as LinkAdd;
    if (spec.kind === "veth") {
      const { netns: peerNs, ...peer } = spec.peer;
      (s as Extract<LinkAdd, { kind: "veth" }>).peer = {
        ...peer,
        ...(peerNs ? { netnsFd: peerNs.fd } : {}),
      };
    }
    const req = linkAddRequest(s, this.#resolve);
    // The kernel echoes the new link (6.2 and later); older ones are asked.
    const echoed = this.#sock.request(
      { ...req, flags: req.flags | NLM_F_ECHO },
      `link add ${spec.name}${
        spec.kind === "veth" ? ` type veth peer ${spec.peer.name}` : ` type ${spec.kind}`
      }`,
    ).filter((m) => m.type === RTM_NEWLINK).map(decodeLink).find((l) => l.name === spec.name);
    if (spec.netns) return -1;
    return echoed ? echoed.index : this.index(spec.name);
  }

  /** Changes a link (`ip link set`): up/down, mtu, address, master, namespace, name. */
  linkSet(link: LinkRef, change: LinkSetSpec): void {
    const { netns, ...rest } = change;
    const c: LinkChange = { ...rest, ...(netns ? { netnsFd: netns.fd } : {}) };
    this.#sock.request(linkSetRequest(link, c, this.#resolve), `link set ${link}`);
  }

  /** Deletes a link (`ip link del`); a veth takes its peer with it. */
  linkDel(link: LinkRef): void {
    this.#sock.request(linkDelRequest(link), `link del ${link}`);
  }

  /** {@link linkDel} without holding the JavaScript thread while the kernel works. */
  async linkDelAsync(link: LinkRef): Promise<void> {
    await this.#sock.requestAsync(linkDelRequest(link), `link del ${link}`);
  }

  /** One link, or undefined when it does not exist. */
  link(link: LinkRef): Link | undefined {
    try {
      const m = this.#sock.request(linkGetRequest(link), `link show dev ${link}`);
      const msg = m.find((x) => x.type === RTM_NEWLINK);
      return msg ? decodeLink(msg) : undefined;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /** Every link of the namespace, with master names filled in. */
  links(): Link[] {
    const msgs = this.#sock.dump(linkDumpRequest(), "link show");
    return nameMasters(msgs.filter((m) => m.type === RTM_NEWLINK).map(decodeLink));
  }

  #names(): Map<number, string> {
    return new Map(this.links().map((l) => [l.index, l.name]));
  }

  // ---- addresses ----

  /** `ip addr add CIDR dev LINK`; `IpExistsError` when the link has it already. */
  addrAdd(link: LinkRef, cidr: string, opts: AddrOptions = {}): void {
    this.#sock.request(
      addrAddRequest(this.index(link), cidr, opts),
      `addr ${opts.replace ? "replace" : "add"} ${cidr} dev ${link}`,
    );
  }

  /** `ip addr del CIDR dev LINK`; `IpNotFoundError` when it has no such address. */
  addrDel(link: LinkRef, cidr: string): void {
    this.#sock.request(addrDelRequest(this.index(link), cidr), `addr del ${cidr} dev ${link}`);
  }

  /** Addresses, of one link and/or family when asked. */
  addrs(filter: { link?: LinkRef; family?: 4 | 6 } = {}): Addr[] {
    const index = filter.link === undefined ? undefined : this.index(filter.link);
    return this.#sock.dump(addrDumpRequest(filter.family), "addr show").map(decodeAddr)
      .filter((a) => index === undefined || a.index === index);
  }

  // ---- routes ----

  /** `ip route replace …`. */
  routeReplace(route: RouteSpec): void {
    this.#sock.request(
      routeReplaceRequest(route, this.#resolve),
      `route replace ${describe(route)}`,
    );
  }

  /** `ip route del …`; `IpNotFoundError` when no route matches. */
  routeDel(route: RouteSpec): void {
    this.#sock.request(routeDelRequest(route, this.#resolve), `route del ${describe(route)}`);
  }

  /** Routes (main table by default), with `dev` names filled in. */
  routes(filter: RouteFilter = {}): Route[] {
    const table = filter.table ?? 254;
    const oif = filter.dev === undefined ? undefined : this.index(filter.dev);
    const list = this.#sock.dump(routeDumpRequest(filter.family), "route show").map(decodeRoute)
      .filter((r) =>
        (table === "all" || r.table === table) &&
        (filter.protocol === undefined || r.protocol === filter.protocol) &&
        (oif === undefined || r.oif === oif) &&
        (filter.cloned || !r.cloned)
      );
    if (list.some((r) => r.oif !== undefined)) {
      const names = this.#names();
      for (const r of list) if (r.oif !== undefined) r.dev = names.get(r.oif) ?? String(r.oif);
    }
    return list;
  }

  // ---- neighbours and FDB ----

  /** `ip neigh replace IP lladdr MAC dev LINK nud permanent` (or the state given). */
  neighReplace(
    link: LinkRef,
    spec: { ip: string; mac: string; state?: "permanent" | "reachable" | "stale" | "noarp" },
  ): void {
    this.#sock.request(
      neighReplaceRequest(this.index(link), spec),
      `neigh replace ${spec.ip} lladdr ${spec.mac} dev ${link}`,
    );
  }

  /** `ip neigh del IP dev LINK`; `IpNotFoundError` when there is none. */
  neighDel(link: LinkRef, ip: string): void {
    this.#sock.request(neighDelRequest(this.index(link), ip), `neigh del ${ip} dev ${link}`);
  }

  /** IPv4/IPv6 neighbours (every state, NOARP included), of one link when asked. */
  neighs(filter: { link?: LinkRef; family?: 4 | 6 } = {}): Neigh[] {
    const index = filter.link === undefined ? undefined : this.index(filter.link);
    const list = this.#sock.dump(neighDumpRequest(filter.family), "neigh show").map(decodeNeigh)
      .filter((n) => n.family !== "bridge" && (index === undefined || n.index === index));
    return this.#withDev(list);
  }

  /** `bridge fdb replace MAC dev LINK [dst IP] self permanent`. */
  fdbReplace(link: LinkRef, spec: FdbSpec): void {
    this.#sock.request(
      fdbAddRequest(this.index(link), spec),
      `fdb replace ${spec.mac} dev ${link}`,
    );
  }

  /** `bridge fdb append …`: one more destination for the MAC (flooding to several VTEPs). */
  fdbAppend(link: LinkRef, spec: FdbSpec): void {
    this.#sock.request(
      fdbAddRequest(this.index(link), spec, true),
      `fdb append ${spec.mac} dev ${link}`,
    );
  }

  /** `bridge fdb del MAC dev LINK [dst IP]`; `IpNotFoundError` when there is none. */
  fdbDel(link: LinkRef, spec: FdbSpec): void {
    this.#sock.request(fdbDelRequest(this.index(link), spec), `fdb del ${spec.mac} dev ${link}`);
  }

  /** FDB entries, of one link when asked. */
  fdb(filter: { link?: LinkRef } = {}): Neigh[] {
    const index = filter.link === undefined ? undefined : this.index(filter.link);
    const list = this.#sock.dump(fdbDumpRequest(), "fdb show").map(decodeNeigh)
      .filter((n) => n.family === "bridge" && (index === undefined || n.index === index));
    return this.#withDev(list);
  }

  #withDev(list: Neigh[]): Neigh[] {
    if (list.length === 0) return list;
    const names = this.#names();
    for (const n of list) n.dev = names.get(n.index) ?? String(n.index);
    return list;
  }

  close(): void {
    this.#sock.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function describe(r: RouteSpec): string {
  return [
    r.dst,
    r.via !== undefined ? `via ${r.via}` : "",
    r.dev !== undefined ? `dev ${r.dev}` : "",
    r.table !== undefined ? `table ${r.table}` : "",
    r.protocol !== undefined ? `proto ${r.protocol}` : "",
  ].filter((x) => x).join(" ");
}
