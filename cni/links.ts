/**
 * What the rtnetlink drivers of both modes share: the kernel work as typed {@link Step}s
 * (decided by pure planning functions, unit-tested without root) run over one {@link Rtnl}
 * per namespace, the pod side (addresses, routes, the interface read back), CHECK's reads
 * of the pod, and link deletion.
 *
 * Sockets: a driver opens the host's on first use and the pod's {@link PodNetns} opens its
 * own on first use; both are closed when the CNI call ends (the driver's and the pod
 * handle's dispose). No process is started.
 * @module
 */

import { IpNotFoundError } from "../netns/errors.ts";
import type { AddrOptions } from "../netns/netlink/addr.ts";
import type { LinkAdd, LinkChange } from "../netns/netlink/link.ts";
import type { RouteSpec } from "../netns/netlink/route.ts";
import type { LinkSetSpec } from "../netns/netlink/rtnl.ts";
import type { Link } from "../netns/netlink/link.ts";
import { Rtnl } from "../netns/netlink/rtnl.ts";
import type { Netns } from "../netns/netns.ts";
import { sysctlSet } from "../netns/sysctl.ts";
import type {
  AddPlan,
  FamAddr,
  LinkReport,
  PodLinkState,
  PodNs,
  PodRoute,
  RouteState,
} from "./driver.ts";
import { openPodNetns } from "./env.ts";
import { CniCode, CniError } from "./errors.ts";

/** Omit over each member of a union. */
type DistOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * A link to create: `inPod` creates it in the pod's namespace (a macvlan/ipvlan slave), a
 * veth's `peer.inPod` creates its other end there.
 */
export type NewLink =
  & (
    | Omit<Extract<LinkAdd, { kind: "veth" }>, "netnsFd" | "peer"> & {
      peer: Omit<Extract<LinkAdd, { kind: "veth" }>["peer"], "netnsFd"> & { inPod?: boolean };
    }
    | DistOmit<Exclude<LinkAdd, { kind: "veth" }>, "netnsFd">
  )
  & { inPod?: boolean };

/** One piece of kernel work, on one namespace's socket. */
export type Step =
  | { op: "link-add"; link: NewLink }
  | { op: "link-set"; link: string; change: Omit<LinkChange, "netnsFd"> }
  | { op: "addr-add"; link: string; cidr: string; opts: AddrOptions }
  | { op: "route-replace"; route: RouteSpec };

/** Runs one step; `pod` is where `inPod` links go. */
export function runStep(rtnl: Rtnl, s: Step, pod?: Netns): void {
  switch (s.op) {
    case "link-add": {
      const where = (inPod: boolean | undefined) => {
        if (!inPod) return {};
        if (!pod) throw new TypeError("a step names the pod's namespace, none is open");
        return { netns: pod };
      };
      const { inPod, ...link } = s.link;
      if (link.kind === "veth") {
        const { inPod: peerInPod, ...peer } = link.peer;
        rtnl.linkAdd({ ...link, peer: { ...peer, ...where(peerInPod) }, ...where(inPod) });
      } else {
        rtnl.linkAdd({ ...link, ...where(inPod) });
      }
      return;
    }
    case "link-set":
      return rtnl.linkSet(s.link, s.change as LinkSetSpec);
    case "addr-add":
      return rtnl.addrAdd(s.link, s.cidr, s.opts);
    case "route-replace":
      return rtnl.routeReplace(s.route);
  }
}

/**
 * Runs the steps in order; the first failure stops them, passed through `refine` (which
 * may turn it into a CniError naming what the step meant) when given.
 */
export function runSteps(
  rtnl: Rtnl,
  steps: Step[],
  pod?: Netns,
  refine?: (s: Step, e: unknown) => unknown,
): void {
  for (const s of steps) {
    try {
      runStep(rtnl, s, pod);
    } catch (e) {
      throw refine ? refine(s, e) : e;
    }
  }
}

/** `ADDRESS/PREFIX` on a link, without DAD for IPv6 (IPAM made it unique). */
export function addrStep(
  link: string,
  a: FamAddr,
  opts: Omit<AddrOptions, "noDad"> = {},
): Step {
  return {
    op: "addr-add",
    link,
    cidr: a.cidr,
    opts: { ...opts, ...(a.family === 6 ? { noDad: true } : {}) },
  };
}

export interface PodPlan {
  ifname: string;
  addresses: FamAddr[];
  routes: PodRoute[];
}

/** The pod side: loopback up, the addresses, the interface up, the routes through it. */
export function podSteps(p: PodPlan): Step[] {
  const s: Step[] = [{ op: "link-set", link: "lo", change: { up: true } }];
  for (const a of p.addresses) s.push(addrStep(p.ifname, a));
  s.push({ op: "link-set", link: p.ifname, change: { up: true } });
  for (const r of p.routes) {
    s.push({
      op: "route-replace",
      route: { dst: r.dst, ...(r.gw ? { via: r.gw } : {}), dev: p.ifname },
    });
  }
  return s;
}

/** A link as ADD reports it, under the name ADD gave it. */
export function report(link: Link, name: string, sandbox?: string): LinkReport {
  const mac = link.mac ?? "";
  return sandbox === undefined
    ? { name, mac, mtu: link.mtu }
    : { name, mac, sandbox, mtu: link.mtu };
}

/** A link that must exist (ADD reads back what it made). */
export function mustLink(rtnl: Rtnl, name: string): Link {
  const link = rtnl.link(name);
  if (!link) throw new CniError(CniCode.Internal, `the kernel did not report link ${name}`);
  return link;
}

/** A link deletion's error: false when the link was gone already, else thrown. */
function wasGone(e: unknown): false {
  if (e instanceof IpNotFoundError) return false;
  throw e;
}

/** Deletes a link; true when it existed. */
export function deleteLink(rtnl: Rtnl, name: string): boolean {
  try {
    rtnl.linkDel(name);
    return true;
  } catch (e) {
    return wasGone(e);
  }
}

/** {@link deleteLink}, the kernel's work off the JavaScript thread (DEL in the agent). */
export function deleteLinkAsync(rtnl: Rtnl, name: string): Promise<boolean> {
  return rtnl.linkDelAsync(name).then(() => true, wasGone);
}

/** The pod's namespace (CNI_NETNS), with its rtnetlink socket opened on first use. */
export class PodNetns implements PodNs {
  #rtnl: Rtnl | undefined;
  constructor(readonly netns: Netns) {}

  get path(): string {
    return this.netns.path;
  }

  get rtnl(): Rtnl {
    return this.#rtnl ??= Rtnl.open(this.netns);
  }

  [Symbol.dispose](): void {
    try {
      this.#rtnl?.close();
    } finally {
      this.netns.close();
    }
  }
}

/** The PodNetns behind a PodNs these drivers opened. */
export function podOf(pod: PodNs): PodNetns {
  if (!(pod instanceof PodNetns)) throw new TypeError("not a namespace an rtnl driver opened");
  return pod;
}

/**
 * The host-side socket of one CNI call, opened on first use; the pod-side methods both
 * drivers share (see ModeDriver).
 */
export abstract class RtnlDriver implements Disposable {
  #host: Rtnl | undefined;

  /** The socket in the plugin's (the node's) namespace. */
  protected get host(): Rtnl {
    return this.#host ??= Rtnl.open();
  }

  [Symbol.dispose](): void {
    this.#host?.close();
    this.#host = undefined;
  }

  openPod(path: string): PodNs {
    return new PodNetns(openPodNetns({ netns: path }));
  }

  setupPod(pod: PodNs, plan: AddPlan): Promise<LinkReport> {
    const p = podOf(pod);
    const ifname = plan.att.ifname;
    // The pod's addresses skip DAD (IPAM made them unique); its link-local should too, or
    // its first neighbour exchanges wait out DAD and cross-node packets stall for a second.
    try {
      sysctlSet(`net/ipv6/conf/${ifname}/accept_dad`, 0, { netns: p.netns });
    } catch {
      // IPv6 disabled in the pod
    }
    runSteps(p.rtnl, podSteps({ ifname, addresses: plan.addresses, routes: plan.routes }));
    return Promise.resolve(report(mustLink(p.rtnl, ifname), ifname, plan.att.netns));
  }

  /** Error 101 when the pod has an interface of the name already. */
  protected refuseExistingIfname(pod: PodNs, att: { ifname: string; netns: string }): void {
    if (podOf(pod).rtnl.link(att.ifname)) {
      throw new CniError(
        CniCode.AttachmentExists,
        `interface ${att.ifname} already exists in ${att.netns}`,
      );
    }
  }

  podLink(pod: PodNs, ifname: string): Promise<PodLinkState | undefined> {
    const rtnl = podOf(pod).rtnl;
    const link = rtnl.link(ifname);
    if (!link) return Promise.resolve(undefined);
    let addrs;
    try {
      addrs = rtnl.addrs({ link: link.index });
    } catch (e) {
      if (!(e instanceof IpNotFoundError)) throw e;
      return Promise.resolve(undefined); // gone meanwhile
    }
    return Promise.resolve({
      mac: link.mac,
      addresses: addrs.map((a) => `${a.address}/${a.prefixlen}`),
      kind: link.kind,
      mode: link.mode,
    });
  }

  podDefaultRoutes(pod: PodNs, family: 4 | 6): Promise<RouteState[]> {
    const routes = podOf(pod).rtnl.routes({ family }).filter((r) => r.dst === "default");
    return Promise.resolve(routes.map((r) => ({ gateway: r.via, dev: r.dev })));
  }
}
