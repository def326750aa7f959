/**
 * macvlan and ipvlan modes: the pod's interface is a slave of the node's uplink (the
 * `master`), created over the host's rtnetlink socket straight into the pod's namespace
 * under its CNI_IFNAME; the pod side (addresses, routes) is the one both modes share
 * (links.ts). No veth, no bridge, no gateway address on the host: the pod's default
 * route goes to IPAM's gateway on the master's network.
 *
 * Optional host shim: a slave of the master in the host namespace (macvlan bridge mode,
 * ipvlan in the network's mode) holding the node's address, with a route to each pod
 * subnet through it, so the node reaches its own pods (a slave cannot talk to its
 * master directly).
 *
 * The decisions (master, MTU, does the shim exist) come from link lookups and procfs, no
 * process; the planning functions are pure and unit-tested. {@link SlaveDriver} is the
 * {@link ModeDriver} of both kinds.
 * @module
 */

import { formatCidr, parseCidr } from "../ipam/addr.ts";
import type { Logger } from "../lib/log.ts";
import { IpExistsError, NetnsNotFoundError } from "../netns/errors.ts";
import { defaultRouteInterface, linkAddresses } from "../netns/links.ts";
import { Rtnl } from "../netns/netlink/rtnl.ts";
import { Netns } from "../netns/netns.ts";
import type { NetConf, SlaveConf } from "./config.ts";
import type * as drv from "./driver.ts";
import { CniCode, CniError } from "./errors.ts";
import { addrStep, deleteLink, podOf, RtnlDriver, runSteps, type Step } from "./links.ts";
import { fnv1a64 } from "./names.ts";

type MacvlanMode = "private" | "vepa" | "bridge" | "passthru" | "source";
type IpvlanMode = "l2" | "l3" | "l3s";

/** Kinds of links that are themselves slaves of another link (never a master). */
const SLAVE_DRIVERS = new Set(["macvlan", "macvtap", "ipvlan", "ipvtap"]);

export interface SlavePlan {
  kind: "macvlan" | "ipvlan";
  master: string;
  linkMode: string;
  ifname: string;
  /** The pod namespace path (CNI_NETNS). */
  podNetns: string;
  mtu: number;
  podMac?: string | undefined;
}

/**
 * The host-side step: the slave created in the pod's namespace under its final name (so
 * no name in the host namespace is ever taken), then nothing else: the pod side reads it
 * back.
 */
export function slaveSteps(p: SlavePlan): Step[] {
  const common = {
    name: p.ifname,
    link: p.master,
    mtu: p.mtu,
    ...(p.podMac ? { mac: p.podMac } : {}),
    inPod: true,
  };
  return [{
    op: "link-add",
    link: p.kind === "macvlan"
      ? { ...common, kind: "macvlan", mode: p.linkMode as MacvlanMode }
      : { ...common, kind: "ipvlan", mode: p.linkMode as IpvlanMode },
  }];
}

/** The shim's name: `shim` + 11 hex digits of FNV-1a 64 of `kind:master` (15 characters). */
export function shimName(kind: string, master: string): string {
  return "shim" + fnv1a64(`${kind}:${master}`).toString(16).padStart(16, "0").slice(0, 11);
}

export interface ShimPlan {
  kind: "macvlan" | "ipvlan";
  name: string;
  master: string;
  linkMode: string;
  /** Create the shim (it is missing). */
  create: boolean;
  /** The node's addresses (`ADDR/32`, `ADDR/128`) the shim holds. */
  nodeAddrs: string[];
  /** Pod subnets routed through the shim. */
  subnets: string[];
}

/** The shim's steps: create it once, then (every ADD) make sure the pod subnets route through it. */
export function shimSteps(p: ShimPlan): Step[] {
  const s: Step[] = [];
  if (p.create) {
    s.push({
      op: "link-add",
      link: p.kind === "macvlan"
        ? { kind: "macvlan", name: p.name, link: p.master, mode: "bridge" }
        : { kind: "ipvlan", name: p.name, link: p.master, mode: p.linkMode as IpvlanMode },
    });
    for (const a of p.nodeAddrs) {
      s.push(addrStep(p.name, famOf(a), { replace: true, noPrefixRoute: true }));
    }
    s.push({ op: "link-set", link: p.name, change: { up: true } });
  }
  for (const dst of p.subnets) s.push({ op: "route-replace", route: { dst, dev: p.name } });
  return s;
}

function famOf(cidr: string): drv.FamAddr {
  return { family: cidr.includes(":") ? 6 : 4, cidr };
}

/** A single address as a host prefix (`10.0.0.1/32`, `fd00::1/128`). */
export function hostCidr(ip: string): string {
  return `${ip}/${ip.includes(":") ? 128 : 32}`;
}

/**
 * The pod's on-link routes to the node's addresses (the shim answers for them), for the
 * families the pod has.
 */
export function shimPodRoutes(nodeAddrs: string[], families: (4 | 6)[]): { dst: string }[] {
  return nodeAddrs.filter((a) => families.includes(a.includes(":") ? 6 : 4)).map((a) => ({
    dst: hostCidr(a),
  }));
}

/** The pod subnets of `ADDRESS/PREFIX`es (`10.5.0.7/24` → `10.5.0.0/24`). */
export function subnetsOf(cidrs: string[]): string[] {
  return [...new Set(cidrs.map((c) => formatCidr(parseCidr(c))))];
}

function bad(field: string, value: unknown, why: string): CniError {
  return new CniError(
    CniCode.InvalidConfig,
    `invalid network config: ${field} ${JSON.stringify(value)} ${why}`,
  );
}

export interface MasterInfo {
  name: string;
  mtu: number;
}

/**
 * The master the config names (or the default-route interface), checked before anything
 * is touched: it exists, it is not itself a macvlan/ipvlan slave, and `mtu` is not above
 * its MTU. Error 7 naming the field otherwise. A procfs read (the default route) and one
 * link lookup.
 */
export function resolveMaster(slave: SlaveConf, mtu: number | undefined, host: Rtnl): MasterInfo {
  const name = slave.master ?? defaultRouteInterface({ netns: host.netns });
  const field = slave.master ? "master" : "master (the default-route interface)";
  if (name === undefined) {
    throw new CniError(
      CniCode.InvalidConfig,
      "invalid network config: master is not set and the node has no default route to take it from",
    );
  }
  const link = host.link(name);
  if (!link) throw bad(field, name, "does not exist in the node's namespace");
  const masterMtu = link.mtu;
  const driver = link.kind ?? "";
  if (SLAVE_DRIVERS.has(driver)) {
    throw bad(field, name, `is itself a ${driver} slave; name its parent link instead`);
  }
  if (mtu !== undefined && mtu > masterMtu) {
    throw bad("mtu", mtu, `is above the MTU of master ${JSON.stringify(name)} (${masterMtu})`);
  }
  return { name, mtu: masterMtu };
}

/**
 * Error 7 when a pod subnet is routed through a link other than the shim already:
 * `route replace` would take that route (typically the master's own subnet) away.
 * A procfs read; called before any link is touched.
 */
export function checkShimRoutes(
  kind: "macvlan" | "ipvlan",
  master: string,
  subnets: string[],
  host?: Netns,
): void {
  const name = shimName(kind, master);
  for (const s of subnets) {
    const dev = ipv4RouteDev(s, host);
    if (dev !== undefined && dev !== name) {
      throw bad(
        "hostShim",
        true,
        `cannot route pod subnet ${s} through the shim: the node routes it through ${dev} already`,
      );
    }
  }
}

/**
 * Routes the pod subnets through the shim, creating the shim first when `create`,
 * holding the node's addresses. Call {@link checkShimRoutes} first.
 */
function ensureShim(host: Rtnl, plan: ShimPlan): void {
  try {
    runSteps(host, shimSteps(plan));
  } catch (e) {
    if (!(plan.create && e instanceof IpExistsError)) throw e;
    // a concurrent ADD made the shim: only the routes are left to do
    runSteps(host, shimSteps({ ...plan, create: false }));
  }
}

/** The link an IPv4 route to exactly `subnet` uses (`/proc/thread-self/net/route`). */
export function ipv4RouteDev(subnet: string, host?: Netns): string | undefined {
  const c = parseCidr(subnet);
  if (c.family !== 4) return undefined;
  const read = () => Deno.readTextFileSync("/proc/thread-self/net/route");
  const text = host ? host.run(read) : read();
  // procfs prints the network-order word as a little-endian number: bytes reversed
  const hex = (v: bigint) => {
    let r = 0n;
    for (let i = 0; i < 4; i++) r = (r << 8n) | ((v >> BigInt(8 * i)) & 0xffn);
    return r.toString(16).padStart(8, "0").toUpperCase();
  };
  const mask = c.prefix === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - c.prefix)) - 1n);
  const dst = hex(c.network);
  const msk = hex(mask);
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[1] === dst && f[7] === msk) return f[0];
  }
  return undefined;
}

/** macvlan and ipvlan modes' driver: rtnetlink, procfs and ioctls. */
export class SlaveDriver extends RtnlDriver implements drv.ModeDriver {
  #master: MasterInfo = { name: "", mtu: 0 };
  /** The shim's plan once ADD has the subnets: undefined without `hostShim`. */
  #shim: ShimPlan | undefined;
  constructor(readonly conf: NetConf, readonly slave: SlaveConf, readonly log: Logger) {
    super();
  }

  probe(pod: drv.PodNs, att: drv.Attachment): Promise<drv.Probe> {
    // Everything about the master is decided before anything is touched.
    const master = this.#master = resolveMaster(this.slave, this.conf.mtu, this.host);
    this.refuseExistingIfname(pod, att);
    const mtu = this.conf.mtu ?? master.mtu;
    return Promise.resolve({ mtu, mtuOrigin: this.conf.mtu ? "" : ` (master ${master.name}'s)` });
  }

  prepare(addresses: drv.FamAddr[]): Promise<drv.PodRoute[]> {
    const { kind, linkMode, hostShim } = this.slave;
    if (!hostShim) return Promise.resolve([]);
    const master = this.#master.name;
    const subnets = subnetsOf(addresses.map((a) => a.cidr));
    checkShimRoutes(kind, master, subnets);
    // With the shim, the node's addresses are on-link for the pod: the shim answers for them.
    const nodeAddrs = linkAddresses(master);
    const name = shimName(kind, master);
    this.#shim = {
      kind,
      name,
      master,
      linkMode,
      create: !this.host.link(name),
      nodeAddrs: nodeAddrs.map(hostCidr),
      subnets,
    };
    return Promise.resolve(shimPodRoutes(nodeAddrs, addresses.map((a) => a.family)));
  }

  /** The slave, created in the pod's namespace; an existing shim's routes on the same socket. */
  setupHost(pod: drv.PodNs, plan: drv.AddPlan): Promise<drv.LinkReport[]> {
    const p: SlavePlan = {
      kind: this.slave.kind,
      master: this.#master.name,
      linkMode: this.slave.linkMode,
      ifname: plan.att.ifname,
      podNetns: plan.att.netns,
      mtu: plan.mtu,
      podMac: plan.podMac,
    };
    const steps = slaveSteps(p);
    this.log.debug("slave", { kind: p.kind, master: p.master, mode: p.linkMode });
    const shim = this.#shim;
    if (shim && !shim.create) steps.push(...shimSteps({ ...shim, nodeAddrs: [] }));
    runSteps(
      this.host,
      steps,
      podOf(pod).netns,
      (s, e) =>
        s.op === "link-add" && e instanceof IpExistsError
          ? new CniError(
            CniCode.AttachmentExists,
            `interface ${p.ifname} already exists in ${p.podNetns}`,
            e.stderr,
          )
          : e,
    );
    return Promise.resolve([]);
  }

  undoHost(pod: drv.PodNs, plan: drv.AddPlan): Promise<void> {
    deleteLink(podOf(pod).rtnl, plan.att.ifname);
    return Promise.resolve();
  }

  finish(_plan: drv.AddPlan): Promise<string | undefined> {
    if (!this.#shim?.create) return Promise.resolve(undefined);
    ensureShim(this.host, this.#shim);
    return Promise.resolve("shim");
  }

  describe(_att: drv.Attachment): Record<string, string> {
    return {
      [this.slave.kind]: `${this.#master.name} ${this.slave.linkMode}`,
      ...(this.#shim ? { shim: this.#shim.name } : {}),
    };
  }

  /**
   * The pod's interface lives only in the pod's namespace. Deleted there when CNI_NETNS
   * is given and still exists; never in the plugin's own namespace.
   */
  detach(att: drv.Attachment): Promise<Record<string, string>> {
    const done = { ifname: att.ifname };
    if (att.netns === "") return Promise.resolve(done);
    let ns: Netns;
    try {
      ns = Netns.open(att.netns);
    } catch (e) {
      if (e instanceof NetnsNotFoundError) {
        this.log.debug("pod namespace already gone", { netns: att.netns });
        return Promise.resolve(done);
      }
      throw e;
    }
    using pod = ns;
    if (pod.isHome()) {
      this.log.warn("DEL: CNI_NETNS is the plugin's own namespace; no interface deleted", {
        netns: att.netns,
      });
      return Promise.resolve(done);
    }
    using rtnl = Rtnl.open(pod);
    const existed = deleteLink(rtnl, att.ifname);
    this.log.debug(existed ? "pod interface deleted" : "pod interface already gone", {
      ifname: att.ifname,
    });
    return Promise.resolve(done);
  }

  /** Nothing network-wide: config refuses ipMasq in these modes. */
  dropNetwork(): Promise<void> {
    return Promise.resolve();
  }

  /** The master still there and fit; the pod's interface its slave, of the kind and mode. */
  hostProblem(att: drv.Attachment, link: drv.PodLinkState): Promise<string | undefined> {
    const slave = this.slave;
    resolveMaster(slave, this.conf.mtu, this.host);
    if (link.kind !== slave.kind) {
      return Promise.resolve(
        `${att.ifname} is a ${link.kind ?? "plain"} link, not a ${slave.kind} slave`,
      );
    }
    if (link.mode !== undefined && link.mode !== slave.linkMode) {
      return Promise.resolve(
        `${att.ifname} is in ${slave.kind} mode ${link.mode}, not ${slave.linkMode}`,
      );
    }
    return Promise.resolve(undefined);
  }

  /** Pod interfaces live only in pod namespaces: nothing on the node to collect. */
  collect(_keep: { containerID: string; ifname: string }[]): Promise<unknown[]> {
    return Promise.resolve([]);
  }

  /** The master still there and fit (error 7 otherwise). */
  status(): Promise<void> {
    resolveMaster(this.slave, this.conf.mtu, this.host);
    return Promise.resolve();
  }
}
