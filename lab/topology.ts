/**
 * The lab's network: a simulated cluster's underlay built in network namespaces, never
 * touching the machine's own (root) namespace and with no route to the real network.
 *
 * ```
 *   ohno-lab-NAME            the lab namespace: bridge ul0 (172.31.0.1/24, fd00:172:31::1/64),
 *   │                        where etcd listens; forwarding off, no uplink
 *   ├─ ohno-lab-NAME-node1   eth0 172.31.0.11/24, fd00:172:31::11/64, default via .1, forwarding on
 *   ├─ ohno-lab-NAME-node2   eth0 172.31.0.12/24, fd00:172:31::12/64, …
 *   └─ ohno-lab-NAME-outside eth0 172.31.0.200/24, fd00:172:31::200/64: a host outside the
 *                            cluster CIDRs (no route to the pods: it sees only node addresses)
 * ```
 *
 * With `underlay: "routed"` the nodes sit in `subnets` (default 2) subnets instead, one
 * bridge each in the lab namespace, which routes between them (forwarding on) and knows
 * nothing about pod addresses: the topology where host-gw cannot work and vxlan must.
 *
 * ```
 *   ohno-lab-NAME            bridges ul0 (172.31.0.1/24, fd00:172:31::1/64), ul1 (172.31.1.1/24,
 *   │                        fd00:172:31:1::1/64), …; forwarding on; etcd on ul0's address
 *   ├─ ohno-lab-NAME-node1   subnet 0: 172.31.0.11/24, fd00:172:31::11/64, default via 172.31.0.1
 *   ├─ ohno-lab-NAME-node2   subnet 1: 172.31.1.12/24, fd00:172:31:1::12/64, default via 172.31.1.1
 *   ├─ ohno-lab-NAME-node3   subnet 0 again (nodes go round the subnets): 172.31.0.13/24, …
 *   └─ ohno-lab-NAME-outside subnet 0, .200
 * ```
 *
 * Each node (and the outside host) is one veth from the lab namespace's bridge into its
 * own namespace. Names derive from the lab name, so several labs coexist (each has its
 * own lab namespace, so their underlay addresses may be the same); {@link labDown} finds
 * a lab's namespaces by name alone, so it cleans up after a crash too.
 *
 * @example
 * ```ts ignore
 * await using lab = await labUp({ name: "demo", nodes: 3 });
 * await lab.nodes[0]!.ns.output("ping", { args: ["-c1", lab.nodes[1]!.ipv4] });
 * ```
 * @module
 */

import { type Cidr, formatIp, nthAddress, nthSubnet, parseCidr } from "../ipam/addr.ts";
import { IpBatch } from "../netns/ip.ts";
import { linkNames } from "../netns/links.ts";
import { createNamedNetns, deleteNamedNetns, listNamedNetns } from "../netns/manage.ts";
import { Netns } from "../netns/netns.ts";
import { sysctlSet } from "../netns/sysctl.ts";

/** The namespace prefix of labs made by `ohno lab`. */
const LAB_PREFIX = "ohno-lab-";
/** The default underlay. */
const LAB_UNDERLAY4 = "172.31.0.0/24";
const LAB_UNDERLAY6 = "fd00:172:31::/64";
/** The default routed underlay: one /24 and one /64 per subnet out of these. */
const LAB_ROUTED_UNDERLAY4 = "172.31.0.0/16";
const LAB_ROUTED_UNDERLAY6 = "fd00:172:31::/48";
/** The flat underlay (one L2 segment) or the routed one (subnets joined by a router). */
export type LabUnderlay = "flat" | "routed";
const MAX_SUBNETS = 16;
/** The bridge in the lab namespace. */
const LAB_BRIDGE = "ul0";
/** The underlay interface inside each node and the outside host. */
const LAB_IFNAME = "eth0";

const NAME_RE = /^[a-z0-9]{1,16}$/;
/** Host offsets in the underlay prefixes. */
const GATEWAY_OFFSET = 1n;
const NODE_OFFSET = 10n;
const OUTSIDE_OFFSET = 200n;
const MAX_NODES = 180;

export interface LabOptions {
  /** The lab's name: 1–16 lowercase letters and digits (default `ohno`). */
  name?: string;
  /** How many nodes (1–180). */
  nodes: number;
  /** Namespace prefix (default `ohno-lab-`; tests use their own, e.g. `ohnot-<pid>-`). */
  prefix?: string;
  /** IPv4 underlay prefix (default 172.31.0.0/24). */
  underlay4?: string;
  /** IPv6 underlay prefix (default fd00:172:31::/64). */
  underlay6?: string;
  /** MTU of the underlay links (default 1500). */
  mtu?: number;
  /** `flat` (default: one segment) or `routed` (subnets joined by the lab namespace). */
  underlay?: LabUnderlay;
  /** How many subnets a routed underlay has (2-16, default 2). */
  subnets?: number;
}

/** One subnet of the underlay: a bridge in the lab namespace and its addresses. */
export interface LabSubnet {
  bridge: string;
  cidr4: string;
  cidr6: string;
  /** The lab namespace's address on it: the default gateway of the hosts in it. */
  gateway: { ipv4: string; ipv6: string };
}

/** A namespace on the underlay: a node or the outside host. */
export interface LabHost {
  /** `node1`, `node2`, …, or `outside`: also the Kubernetes node name in the lab. */
  name: string;
  /** The namespace's name (`ohno-lab-NAME-node1`). */
  netns: string;
  /** `/var/run/netns/…`. */
  path: string;
  /** An open handle (closed by {@link Lab.close}). */
  ns: Netns;
  /** The underlay interface inside the namespace (`eth0`). */
  ifname: string;
  ipv4: string;
  ipv6: string;
  /** With prefix length (`172.31.0.11/24`). */
  cidr4: string;
  cidr6: string;
  /** The index of its subnet in {@link Lab.subnets} (always 0 on a flat underlay). */
  subnet: number;
}

/** A lab that is up. Dispose (or `down()`) removes it; `close()` only closes handles. */
export interface Lab extends AsyncDisposable, Disposable {
  name: string;
  prefix: string;
  /** The lab namespace (bridge, etcd). */
  netns: string;
  path: string;
  ns: Netns;
  bridge: string;
  /** The bridge's addresses in the lab namespace: the nodes' default gateway, where etcd listens. */
  gateway: { ipv4: string; ipv6: string };
  underlay4: string;
  underlay6: string;
  /** `flat` or `routed`. */
  underlay: LabUnderlay;
  /** The underlay's subnets (one on a flat underlay). */
  subnets: LabSubnet[];
  nodes: LabHost[];
  outside: LabHost;
  /** A node by name (`node2`); throws when there is none. */
  node(name: string): LabHost;
  close(): void;
  down(): Promise<void>;
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new TypeError(
      `lab name ${JSON.stringify(name)} is not 1-16 lowercase letters and digits`,
    );
  }
}

/** Namespace names of a lab: the lab's own, each node's, the outside host's. */
export function labNetnsName(name: string, prefix = LAB_PREFIX, host?: string): string {
  return host ? `${prefix}${name}-${host}` : `${prefix}${name}`;
}

/**
 * The namespaces that exist now for lab `name` (pods first, then nodes and outside host,
 * the lab namespace last: the order to delete them in). Exact matching: lab `a` never claims a
 * namespace of lab `ab` (names hold no `-`, hosts are `nodeN` or `outside`).
 */
export function labNamespaces(name: string, prefix = LAB_PREFIX): string[] {
  checkName(name);
  const base = labNetnsName(name, prefix);
  const all = listNamedNetns();
  const of = (re: RegExp) =>
    all.filter((n) => n.startsWith(base + "-") && re.test(n.slice(base.length + 1)));
  // Pods (`ohno lab pod add`) first, then the hosts, the lab namespace last.
  const pods = of(/^pod-[a-z0-9][a-z0-9-]{0,39}$/);
  const hosts = of(/^(node\d+|outside)$/);
  const own = all.includes(base) ? [base] : [];
  return [...pods, ...hosts, ...own];
}

/** Names of the labs that exist now (by their lab namespace). */
export function listLabs(prefix = LAB_PREFIX): string[] {
  return listNamedNetns()
    .filter((n) => n.startsWith(prefix) && NAME_RE.test(n.slice(prefix.length)))
    .map((n) => n.slice(prefix.length));
}

/**
 * Removes lab `name`: every namespace it has (killing what runs inside: agents, etcd,
 * pods' processes). Works after a crash (it goes by name); removing a lab that is not
 * there is fine. Returns the namespaces removed.
 */
export async function labDown(name: string, prefix = LAB_PREFIX): Promise<string[]> {
  const names = labNamespaces(name, prefix);
  const hosts = names.slice(0, -1);
  const rest = names.slice(-1);
  await Promise.all(hosts.map((n) => deleteNamedNetns(n)));
  for (const n of rest) await deleteNamedNetns(n);
  return names;
}

interface Plan {
  name: string;
  prefix: string;
  u4: Cidr;
  u6: Cidr;
  underlay: LabUnderlay;
  /** Per subnet: its IPv4 and IPv6 prefix (one on a flat underlay). */
  nets: { u4: Cidr; u6: Cidr }[];
}

/** The subnet a host is in: nodes go round the subnets (node1 in 0, node2 in 1, …). */
function subnetOf(p: Plan, host: string): number {
  return host === "outside" ? 0 : (Number(host.slice(4)) - 1) % p.nets.length;
}

function hostAddresses(p: Plan, offset: bigint, subnet = 0) {
  const n = p.nets[subnet]!;
  const ipv4 = formatIp(4, nthAddress(n.u4, offset));
  // IPv6 host parts read like the IPv4 ones (node1 = …::11, outside = …::200).
  const ipv6 = formatIp(6, nthAddress(n.u6, BigInt(`0x${offset}`)));
  return { ipv4, ipv6, cidr4: `${ipv4}/${n.u4.prefix}`, cidr6: `${ipv6}/${n.u6.prefix}`, subnet };
}

function planOf(
  opts: {
    name?: string;
    prefix?: string;
    underlay4?: string;
    underlay6?: string;
    underlay?: LabUnderlay;
    subnets?: number;
  },
): Plan {
  const name = opts.name ?? "ohno";
  checkName(name);
  const underlay = opts.underlay ?? "flat";
  if (underlay !== "flat" && underlay !== "routed") {
    throw new TypeError(`underlay ${JSON.stringify(underlay)} is not flat or routed`);
  }
  const routed = underlay === "routed";
  const u4 = parseCidr(opts.underlay4 ?? (routed ? LAB_ROUTED_UNDERLAY4 : LAB_UNDERLAY4));
  const u6 = parseCidr(opts.underlay6 ?? (routed ? LAB_ROUTED_UNDERLAY6 : LAB_UNDERLAY6));
  if (u4.family !== 4) throw new TypeError(`underlay4 ${opts.underlay4} is not an IPv4 prefix`);
  if (u6.family !== 6) throw new TypeError(`underlay6 ${opts.underlay6} is not an IPv6 prefix`);
  if (!routed) {
    if (u4.prefix > 24) {
      throw new RangeError(
        `underlay4 ${opts.underlay4} is too small: the lab needs a /24 or larger`,
      );
    }
    return { name, prefix: opts.prefix ?? LAB_PREFIX, u4, u6, underlay, nets: [{ u4, u6 }] };
  }
  const subnets = opts.subnets ?? 2;
  if (!Number.isInteger(subnets) || subnets < 2 || subnets > MAX_SUBNETS) {
    throw new RangeError(`a routed underlay has 2-${MAX_SUBNETS} subnets, got ${subnets}`);
  }
  if (u4.prefix > 20 || u6.prefix > 60) {
    throw new RangeError(
      `a routed underlay needs an IPv4 /20 and an IPv6 /60 or larger (got ${opts.underlay4}, ${opts.underlay6})`,
    );
  }
  const nets = Array.from({ length: subnets }, (_, k) => ({
    u4: nthSubnet(u4, 24, BigInt(k)),
    u6: nthSubnet(u6, 64, BigInt(k)),
  }));
  return { name, prefix: opts.prefix ?? LAB_PREFIX, u4, u6, underlay, nets };
}

function subnetsOf(p: Plan): LabSubnet[] {
  return p.nets.map((n, k) => {
    const gw = hostAddresses(p, GATEWAY_OFFSET, k);
    return {
      bridge: p.underlay === "flat" ? LAB_BRIDGE : `ul${k}`,
      cidr4: `${formatIp(4, n.u4.network)}/${n.u4.prefix}`,
      cidr6: `${formatIp(6, n.u6.network)}/${n.u6.prefix}`,
      gateway: { ipv4: gw.ipv4, ipv6: gw.ipv6 },
    };
  });
}

/**
 * Builds lab `name` with `nodes` nodes and the outside host. Refuses when any namespace
 * of that lab exists already (remove it with {@link labDown}). On failure everything
 * made so far is removed again.
 */
export async function labUp(opts: LabOptions): Promise<Lab> {
  const plan = planOf(opts);
  const { name, prefix } = plan;
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > MAX_NODES) {
    throw new RangeError(`nodes must be 1-${MAX_NODES}, got ${opts.nodes}`);
  }
  const mtu = opts.mtu ?? 1500;
  if (labNamespaces(name, prefix).length > 0) {
    throw new Error(
      `lab ${name} already exists (${labNamespaces(name, prefix).join(", ")}): take it down first`,
    );
  }
  const handles: Netns[] = [];
  try {
    const labNs = await createNamedNetns(labNetnsName(name, prefix));
    handles.push(labNs);
    const subnets = subnetsOf(plan);
    const lb = new IpBatch();
    for (const sn of subnets) {
      const gw = hostAddresses(plan, GATEWAY_OFFSET, subnets.indexOf(sn));
      lb.add("link", "add", sn.bridge, "mtu", String(mtu), "type", "bridge")
        .add("addr", "add", gw.cidr4, "dev", sn.bridge)
        .add("addr", "add", gw.cidr6, "dev", sn.bridge, "nodad")
        .add("link", "set", sn.bridge, "up");
    }
    await lb.run({ netns: labNs });
    if (plan.underlay === "routed") {
      // The router between the subnets: it forwards node to node, and has no route to any
      // pod address (nor any way out of the lab).
      sysctlSet("net.ipv4.ip_forward", 1, { netns: labNs });
      sysctlSet("net.ipv6.conf.all.forwarding", 1, { netns: labNs });
    }
    const gw = subnets[0]!.gateway;

    const specs = [
      ...Array.from({ length: opts.nodes }, (_, i) => ({
        host: `node${i + 1}`,
        offset: NODE_OFFSET + BigInt(i + 1),
        node: true,
      })),
      { host: "outside", offset: OUTSIDE_OFFSET, node: false },
    ];
    const hosts: LabHost[] = [];
    // A few at a time: namespace creation serialises in the kernel anyway.
    for (let i = 0; i < specs.length; i += 8) {
      const made = await Promise.all(
        specs.slice(i, i + 8).map(async (s) => {
          const netns = labNetnsName(name, prefix, s.host);
          const ns = await createNamedNetns(netns);
          handles.push(ns);
          const a = hostAddresses(plan, s.offset, subnetOf(plan, s.host));
          const sn = subnets[a.subnet]!;
          // The veth is made in the lab namespace with its far end created in the host's.
          await new IpBatch()
            .add(
              "link",
              "add",
              s.host,
              "mtu",
              String(mtu),
              "type",
              "veth",
              "peer",
              "name",
              LAB_IFNAME,
              "mtu",
              String(mtu),
              "netns",
              netns,
            )
            .add("link", "set", s.host, "master", sn.bridge)
            .add("link", "set", s.host, "up")
            .run({ netns: labNs });
          const b = new IpBatch()
            .add("addr", "add", a.cidr4, "dev", LAB_IFNAME)
            .add("addr", "add", a.cidr6, "dev", LAB_IFNAME, "nodad")
            .add("link", "set", LAB_IFNAME, "up");
          if (s.node) {
            // Nodes route everything else to the lab namespace, which has no way out: a
            // default route for "the interface holding the default route" to find, no leak.
            b.add("route", "add", "default", "via", sn.gateway.ipv4, "dev", LAB_IFNAME);
            b.add("route", "add", "default", "via", sn.gateway.ipv6, "dev", LAB_IFNAME);
          }
          await b.run({ netns: ns });
          if (s.node) {
            sysctlSet("net.ipv4.ip_forward", 1, { netns: ns });
            sysctlSet("net.ipv6.conf.all.forwarding", 1, { netns: ns });
          }
          return {
            name: s.host,
            netns,
            path: `/var/run/netns/${netns}`,
            ns,
            ifname: LAB_IFNAME,
            ...a,
          } satisfies LabHost;
        }),
      );
      hosts.push(...made);
    }
    return makeLab(plan, labNs, gw, hosts);
  } catch (e) {
    for (const h of handles) h.close();
    await labDown(name, prefix).catch(() => {});
    throw e;
  }
}

/**
 * Opens lab `name` that is up (built by this or another process): handles on its
 * namespaces and its addresses, as {@link labUp} returned them. Throws when it is not up.
 */
export function labOpen(
  name: string,
  opts: { prefix?: string; underlay4?: string; underlay6?: string } = {},
): Lab {
  const first = planOf({ ...opts, name });
  const names = labNamespaces(first.name, first.prefix);
  const labName = labNetnsName(first.name, first.prefix);
  if (!names.includes(labName)) {
    throw new Error(`lab ${first.name} is not up (no namespace ${labName})`);
  }
  const handles: Netns[] = [];
  try {
    const labNs = Netns.named(labName);
    handles.push(labNs);
    // A routed lab is told by its bridges: one per subnet (ul0, ul1, …).
    const bridges = linkNames({ netns: labNs }).filter((l) => /^ul\d+$/.test(l)).length;
    const plan = bridges > 1
      ? planOf({ ...opts, name, underlay: "routed", subnets: bridges })
      : first;
    const hosts = names.filter((n) => /^(node\d+|outside)$/.test(n.slice(labName.length + 1)))
      .map((netns) => {
        const host = netns.slice(labName.length + 1);
        const ns = Netns.named(netns);
        handles.push(ns);
        const offset = host === "outside" ? OUTSIDE_OFFSET : NODE_OFFSET + BigInt(host.slice(4));
        return {
          name: host,
          netns,
          path: `/var/run/netns/${netns}`,
          ns,
          ifname: LAB_IFNAME,
          ...hostAddresses(plan, offset, subnetOf(plan, host)),
        };
      }).sort((a, b) => hostOrder(a.name) - hostOrder(b.name));
    return makeLab(plan, labNs, subnetsOf(plan)[0]!.gateway, hosts);
  } catch (e) {
    for (const h of handles) h.close();
    throw e;
  }
}

function hostOrder(host: string): number {
  return host === "outside" ? Number.MAX_SAFE_INTEGER : Number(host.slice(4));
}

function makeLab(
  plan: Plan,
  labNs: Netns,
  gw: { ipv4: string; ipv6: string },
  hosts: LabHost[],
): Lab {
  const outside = hosts.find((h) => h.name === "outside");
  if (!outside) {
    for (const h of [labNs, ...hosts.map((x) => x.ns)]) h.close();
    throw new Error(`lab ${plan.name} has no outside host: take it down and up again`);
  }
  const nodes = hosts.filter((h) => h !== outside);
  const close = () => {
    for (const h of [...hosts.map((x) => x.ns), labNs]) h.close();
  };
  const down = async () => {
    close();
    await labDown(plan.name, plan.prefix);
  };
  return {
    name: plan.name,
    prefix: plan.prefix,
    netns: labNetnsName(plan.name, plan.prefix),
    path: `/var/run/netns/${labNetnsName(plan.name, plan.prefix)}`,
    ns: labNs,
    bridge: LAB_BRIDGE,
    gateway: { ipv4: gw.ipv4, ipv6: gw.ipv6 },
    underlay: plan.underlay,
    subnets: subnetsOf(plan),
    underlay4: `${formatIp(4, plan.u4.network)}/${plan.u4.prefix}`,
    underlay6: `${formatIp(6, plan.u6.network)}/${plan.u6.prefix}`,
    nodes,
    outside,
    node(name: string) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new RangeError(`lab ${plan.name} has no node ${name}`);
      return n;
    },
    close,
    down,
    [Symbol.dispose]: close,
    [Symbol.asyncDispose]: down,
  };
}
