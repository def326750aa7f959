/**
 * Finding this node's own address(es), as configured by `nodeIP` (docs/daemon.md):
 * given addresses, a named interface, the interface holding the default route, or the
 * Kubernetes Node's InternalIP. Also finds the interface that holds the address, whose
 * MTU `mtu: "auto"` starts from.
 * @module
 */

import { parseIp } from "../ipam/addr.ts";
import { type IpAddr, ipJson, type IpRoute, type Netns } from "../netns/mod.ts";
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

/** The usable global addresses of one interface: not link-local, not tentative or failed. */
function usable(link: IpAddr): { ipv4?: string; ipv6?: string } {
  const out: { ipv4?: string; ipv6?: string } = {};
  for (const a of link.addr_info ?? []) {
    if (a.scope !== undefined && a.scope !== "global") continue;
    if (a.tentative || a.dadfailed) continue;
    if (a.family === "inet" && !out.ipv4) out.ipv4 = a.local;
    if (a.family === "inet6" && !out.ipv6) out.ipv6 = a.local;
  }
  return out;
}

/** Resolves the node's addresses as `cfg` says. */
export async function resolveNodeIPs(
  cfg: NodeIPConfig,
  opts: ResolveNodeIPOptions = {},
): Promise<NodeIPs> {
  const netns = opts.netns;
  const links = () => ipJson<IpAddr[]>(["addr", "show"], { netns });

  const withInterface = async (found: Omit<NodeIPs, "interface" | "mtu">): Promise<NodeIPs> => {
    const first = found.ipv4 ?? found.ipv6;
    const link = (await links()).find((l) =>
      (l.addr_info ?? []).some((a) => first !== undefined && sameIp(a.local, first))
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

  const fromInterface = async (ifname: string, source: string): Promise<NodeIPs> => {
    const link = (await links()).find((l) => l.ifname === ifname);
    if (!link) throw new NodeIPError(`${source}: interface ${ifname} does not exist`);
    const u = usable(link);
    if (!u.ipv4 && !u.ipv6) {
      throw new NodeIPError(`${source}: interface ${ifname} has no global address`);
    }
    return { ...u, interface: ifname, mtu: link.mtu, source };
  };

  const fromDefaultRoute = async (): Promise<NodeIPs> => {
    const [d4, d6] = await Promise.all([
      ipJson<IpRoute[]>(["-4", "route", "show", "default"], { netns }),
      ipJson<IpRoute[]>(["-6", "route", "show", "default"], { netns }),
    ]);
    const dev4 = d4.find((r) => r.dev)?.dev;
    const dev6 = d6.find((r) => r.dev)?.dev;
    if (!dev4 && !dev6) {
      throw new NodeIPError(
        "default-route: there is no default route (set nodeIP.addresses or nodeIP.interface)",
      );
    }
    const all = await links();
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
