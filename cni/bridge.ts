/**
 * Bridge mode: the kernel work of attaching a pod to a Linux bridge.
 *
 * Each side is one `ip -j -d -batch -` process: the host side creates what is missing
 * (bridge, gateway addresses, the veth pair with its pod end created straight inside the
 * pod's namespace) and reads back the two links it reports; the pod side addresses the
 * interface, adds routes and reads the interface back. What goes into each batch is
 * decided by pure planning functions (unit-tested without root); the decision inputs
 * come from procfs (no process): does the bridge exist, what is the uplink MTU.
 * @module
 */

import { parseIpPrefix } from "../ipam/addr.ts";
import { IpExistsError, IpNotFoundError } from "../netns/errors.ts";
import { IpBatch, type IpLink } from "../netns/ip.ts";
import type { Netns } from "../netns/netns.ts";
import { sysctlSet } from "../netns/sysctl.ts";
import { CniCode, CniError } from "./errors.ts";

/** An address to put on the bridge (`10.22.0.1/16`) or the pod (`10.22.0.5/16`). */
export interface FamAddr {
  family: 4 | 6;
  /** ADDRESS/PREFIX */
  cidr: string;
}

export interface HostPlan {
  bridge: string;
  createBridge: boolean;
  bridgeMac: string;
  mtu: number;
  gateways: FamAddr[];
  hostVeth: string;
  ifname: string;
  /** The pod namespace path (CNI_NETNS). */
  podNetns: string;
  podMac?: string | undefined;
  hairpin: boolean;
  promisc: boolean;
}

/**
 * The host-side commands, ending with the two `link show`s ADD reports. Every name comes
 * after the keyword that introduces it (`dev`, `name`, `master`, `netns`), so ip never
 * reads a link called `help` or `up` as a keyword; IpBatch quotes what needs quoting.
 */
export function hostCommands(p: HostPlan): string[][] {
  const c: string[][] = [];
  if (p.createBridge) {
    c.push([
      "link",
      "add",
      "name",
      p.bridge,
      "address",
      p.bridgeMac,
      "mtu",
      String(p.mtu),
      "type",
      "bridge",
    ]);
  }
  c.push(["link", "set", "dev", p.bridge, "up"]);
  for (const g of p.gateways) {
    c.push(["addr", "replace", g.cidr, "dev", p.bridge, ...(g.family === 6 ? ["nodad"] : [])]);
  }
  if (p.promisc) c.push(["link", "set", "dev", p.bridge, "promisc", "on"]);
  c.push([
    "link",
    "add",
    p.hostVeth,
    "mtu",
    String(p.mtu),
    "type",
    "veth",
    "peer",
    "name",
    p.ifname,
    "mtu",
    String(p.mtu),
    ...(p.podMac ? ["address", p.podMac] : []),
    "netns",
    p.podNetns,
  ]);
  c.push(["link", "set", "dev", p.hostVeth, "master", p.bridge]);
  if (p.hairpin) {
    c.push(["link", "set", "dev", p.hostVeth, "type", "bridge_slave", "hairpin", "on"]);
  }
  c.push(["link", "set", "dev", p.hostVeth, "up"]);
  c.push(["link", "show", "dev", p.bridge]);
  c.push(["link", "show", "dev", p.hostVeth]);
  return c;
}

export interface PodRoute {
  dst: string;
  gw?: string | undefined;
}

export interface PodPlan {
  ifname: string;
  addresses: FamAddr[];
  routes: PodRoute[];
}

/** The pod-side commands, ending with the `link show` ADD reports. */
export function podCommands(p: PodPlan): string[][] {
  const c: string[][] = [["link", "set", "lo", "up"]];
  for (const a of p.addresses) {
    // nodad: the address is usable at once (IPAM guarantees it is unique).
    c.push(["addr", "add", a.cidr, "dev", p.ifname, ...(a.family === 6 ? ["nodad"] : [])]);
  }
  c.push(["link", "set", "dev", p.ifname, "up"]);
  for (const r of p.routes) {
    c.push(["route", "replace", r.dst, ...(r.gw ? ["via", r.gw] : []), "dev", p.ifname]);
  }
  c.push(["link", "show", "dev", p.ifname]);
  return c;
}

/** Default routes for the families that have a gateway, then the configured routes. */
export function podRoutes(
  gateways: { family: 4 | 6; gw: string }[],
  isDefaultGateway: boolean,
  configured: PodRoute[],
): PodRoute[] {
  const out: PodRoute[] = [];
  const seen = new Set<string>();
  const add = (r: PodRoute) => {
    const key = normDst(r.dst);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(r);
  };
  if (isDefaultGateway) {
    for (const g of gateways) add({ dst: g.family === 4 ? "0.0.0.0/0" : "::/0", gw: g.gw });
  }
  for (const r of configured) {
    const fam = r.dst.includes(":") ? 6 : 4;
    add({ dst: r.dst, gw: r.gw ?? gateways.find((g) => g.family === fam)?.gw });
  }
  return out;
}

function normDst(dst: string): string {
  return dst === "default" ? "0.0.0.0/0" : dst;
}

/** Family and prefix of an `ADDRESS/PREFIX`. */
export function famAddr(cidr: string): FamAddr {
  const { ip } = parseIpPrefix(cidr);
  return { family: ip.family, cidr };
}

function batchOf(commands: string[][]): IpBatch {
  const b = new IpBatch();
  for (const c of commands) b.add(...c);
  return b;
}

export interface HostLinks {
  bridge: IpLink;
  hostVeth: IpLink;
}

/**
 * Runs the host side: the bridge first when it is missing (two ADDs racing to create it
 * both succeed: "exists" is fine), then one batch for the rest.
 */
export async function setupHost(plan: HostPlan, host?: Netns): Promise<HostLinks> {
  let p = plan;
  if (p.createBridge) {
    // A new bridge is created down, and DAD is turned off on it before it comes up: until
    // its link-local address has passed DAD (a second or more) the kernel sends no
    // neighbour solicitations for forwarded packets, so a pod's first packets from
    // another node would be lost.
    try {
      await batchOf([hostCommands(p)[0]!]).run({ netns: host });
    } catch (e) {
      if (!(e instanceof IpExistsError)) throw e; // a concurrent ADD made it
    }
    try {
      sysctlSet(`net/ipv6/conf/${p.bridge}/accept_dad`, 0, { netns: host });
    } catch {
      // IPv6 disabled on this host: nothing to wait for
    }
    p = { ...p, createBridge: false };
  }
  try {
    const docs = await batchOf(hostCommands(p)).runJson<IpLink[]>({ netns: host, details: true });
    const bridge = docs[0]?.[0];
    const hostVeth = docs[1]?.[0];
    if (!bridge || !hostVeth) throw new CniError(CniCode.Internal, "ip did not report the links");
    const kind = bridge.linkinfo?.info_kind;
    if (kind !== "bridge") {
      throw new CniError(
        CniCode.InvalidConfig,
        `invalid network config: bridge ${JSON.stringify(p.bridge)} exists but is a ${
          kind ?? "device"
        } link, not a bridge`,
      );
    }
    return { bridge, hostVeth };
  } catch (e) {
    if (e instanceof IpExistsError && e.command.startsWith(`link add ${p.hostVeth} `)) {
      throw new CniError(
        CniCode.AttachmentExists,
        `interface ${p.ifname} already exists in ${p.podNetns} or host veth ${p.hostVeth} exists`,
        e.stderr,
      );
    }
    throw e;
  }
}

/** Runs the pod side; returns the pod interface as ip reports it. */
export async function setupPod(plan: PodPlan, pod: Netns): Promise<IpLink> {
  // The pod's addresses skip DAD (IPAM made them unique); its link-local should too, or
  // its first neighbour exchanges wait out DAD and cross-node packets stall for a second.
  try {
    sysctlSet(`net/ipv6/conf/${plan.ifname}/accept_dad`, 0, { netns: pod });
  } catch {
    // IPv6 disabled in the pod
  }
  const docs = await batchOf(podCommands(plan)).runJson<IpLink[]>({ netns: pod });
  const link = docs[0]?.[0];
  if (!link) throw new CniError(CniCode.Internal, "ip did not report the pod interface");
  return link;
}

/** Deletes a link; true when it existed. */
export async function deleteLink(name: string, ns?: Netns): Promise<boolean> {
  try {
    await new IpBatch().add("link", "del", "dev", name).run({ netns: ns });
    return true;
  } catch (e) {
    if (e instanceof IpNotFoundError) return false;
    throw e;
  }
}
