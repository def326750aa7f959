/**
 * Finding this node's own address(es), as configured by `nodeIP` (docs/daemon.md):
 * given addresses, a named interface, the interface holding the default route, or the
 * Kubernetes Node's InternalIP. Also finds the interface that holds the address, whose
 * MTU `mtu: "auto"` starts from.
 * @module
 */

import { parseIp } from "../ipam/addr.ts";
import type { Netns } from "../netns/netns.ts";
import { Rtnl } from "../netns/netlink/rtnl.ts";
import type { NodeIPConfig } from "./config.ts";
import { namedError } from "../lib/errors.ts";

/** The node's addresses: at most one per family, and the interface holding them. */
export interface NodeIPs {
  ipv4?: string;
  ipv6?: string;
  /** The interface holding the (first) address, when it is on this host. */
  interface?: string;
  /** Its MTU. */
  mtu?: number;
  /** How they were found (`addresses`, `interface eth1`, `default-route`, `kubernetes`). */
  source: string;
}

/** The node's address could not be determined; the message says what was tried. */
export class NodeIPError extends namedError("NodeIPError") {}

export interface ResolveNodeIPOptions {
  /** Look at interfaces and routes in this namespace (default: the caller's). */
  netns?: Netns | undefined;
  /** The Node's InternalIPs, when Kubernetes is on (for `kubernetes` and `auto`). */
  kubernetes?: () => Promise<{ ipv4: string[]; ipv6: string[] }>;
}

/** An interface and its addresses, as one link and address dump report them. */
interface LinkAddrs {
  ifname: string;
  mtu: number;
  addrs: { family: 4 | 6; local: string; scope: string; tentative: boolean; dadfailed: boolean }[];
}

/** The usable global addresses of one interface: not link-local, not tentative or failed. */
function usable(link: LinkAddrs): { ipv4?: string; ipv6?: string } {
  const out: { ipv4?: string; ipv6?: string } = {};
  for (const a of link.addrs) {
    if (a.scope !== "global") continue;
    if (a.tentative || a.dadfailed) continue;
    if (a.family === 4 && !out.ipv4) out.ipv4 = a.local;
    if (a.family === 6 && !out.ipv6) out.ipv6 = a.local;
  }
  return out;
}

/** Resolves the node's addresses as `cfg` says. */
export async function resolveNodeIPs(
  cfg: NodeIPConfig,
  opts: ResolveNodeIPOptions = {},
): Promise<NodeIPs> {
  // rtnetlink in the node's namespace: a link and an address dump (no `ip` process).
  using rtnl = Rtnl.open(opts.netns);
  const links = (): LinkAddrs[] => {
    const byIndex = new Map<number, LinkAddrs>(
      rtnl.links().map((l) => [l.index, { ifname: l.name, mtu: l.mtu, addrs: [] }]),
    );
    for (const a of rtnl.addrs()) {
      byIndex.get(a.index)?.addrs.push({
        family: a.family,
        local: a.address,
        scope: a.scope,
        tentative: a.tentative,
        dadfailed: a.dadfailed,
      });
    }
    return [...byIndex.values()];
  };

  const withInterface = (found: Omit<NodeIPs, "interface" | "mtu">): NodeIPs => {
    const first = found.ipv4 ?? found.ipv6;
    const link = links().find((l) =>
      l.addrs.some((a) => first !== undefined && sameIp(a.local, first))
    );
    return link ? { ...found, interface: link.ifname, mtu: link.mtu } : found;
  };

  const fromAddresses = (): NodeIPs => {
    const out: NodeIPs = { source: "addresses" };
    for (const a of cfg.addresses) {
      if (parseIp(a).family === 4) out.ipv4 ??= a;
      else out.ipv6 ??= a;
    }
    return out;
  };

  const fromInterface = (ifname: string, source: string): NodeIPs => {
    const link = links().find((l) => l.ifname === ifname);
    if (!link) throw new NodeIPError(`${source}: interface ${ifname} does not exist`);
    const u = usable(link);
    if (!u.ipv4 && !u.ipv6) {
      throw new NodeIPError(`${source}: interface ${ifname} has no global address`);
    }
    return { ...u, interface: ifname, mtu: link.mtu, source };
  };

  const fromDefaultRoute = (): NodeIPs => {
    // The main table's default routes (`ip route show default`), both families in one dump.
    const defaults = rtnl.routes().filter((r) => r.dst === "default" && r.dev);
    const dev4 = defaults.find((r) => r.family === 4)?.dev;
    const dev6 = defaults.find((r) => r.family === 6)?.dev;
    if (!dev4 && !dev6) {
      throw new NodeIPError(
        "default-route: there is no default route (set nodeIP.addresses or nodeIP.interface)",
      );
    }
    const all = links();
    const addrOf = (dev: string | undefined) => {
      const l = dev ? all.find((x) => x.ifname === dev) : undefined;
      return l ? { link: l, ...usable(l) } : undefined;
    };
    const a4 = addrOf(dev4);
    const a6 = addrOf(dev6);
    // Each family from its own default route's interface; else from the other's.
    const ipv4 = a4?.ipv4 ?? a6?.ipv4;
    const ipv6 = a6?.ipv6 ?? a4?.ipv6;
    if (!ipv4 && !ipv6) {
      throw new NodeIPError(`default-route: interface ${dev4 ?? dev6} has no global address`);
    }
    const link = (ipv4 ? (a4?.ipv4 ? a4 : a6) : (a6?.ipv6 ? a6 : a4))!.link;
    return {
      ...(ipv4 ? { ipv4 } : {}),
      ...(ipv6 ? { ipv6 } : {}),
      interface: link.ifname,
      mtu: link.mtu,
      source: "default-route",
    };
  };

  const fromKubernetes = async (): Promise<NodeIPs> => {
    if (!opts.kubernetes) throw new NodeIPError("kubernetes: Kubernetes integration is off");
    const k = await opts.kubernetes();
    if (!k.ipv4[0] && !k.ipv6[0]) throw new NodeIPError("kubernetes: the Node has no InternalIP");
    return withInterface({
      ...(k.ipv4[0] ? { ipv4: k.ipv4[0] } : {}),
      ...(k.ipv6[0] ? { ipv6: k.ipv6[0] } : {}),
      source: "kubernetes",
    });
  };

  switch (cfg.source) {
    case "addresses":
      return await withInterface(fromAddresses());
    case "interface":
      return await fromInterface(cfg.interface!, `interface ${cfg.interface}`);
    case "default-route":
      return await fromDefaultRoute();
    case "kubernetes":
      return await fromKubernetes();
    case "auto":
      if (cfg.addresses.length) return await withInterface(fromAddresses());
      if (cfg.interface) return await fromInterface(cfg.interface, `interface ${cfg.interface}`);
      if (opts.kubernetes) return await fromKubernetes();
      return await fromDefaultRoute();
  }
}

function sameIp(a: string, b: string): boolean {
  try {
    const x = parseIp(a);
    const y = parseIp(b);
    return x.family === y.family && x.value === y.value;
  } catch {
    return false;
  }
}
