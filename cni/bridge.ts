/**
 * Bridge mode: the kernel work of attaching a pod to a Linux bridge, as a
 * {@link ModeDriver} that runs `ip`.
 *
 * Each side is one `ip -j -d -batch -` process: the host side creates what is missing
 * (bridge, gateway addresses, the veth pair with its pod end created straight inside the
 * pod's namespace) and reads back the two links it reports; the pod side (iplinks.ts)
 * addresses the interface, adds routes and reads the interface back. What goes into each
 * batch is decided once by pure planning functions (unit-tested without root); the
 * decision inputs come from procfs (no process): does the bridge exist, what is the
 * uplink MTU.
 * @module
 */

import { IpExistsError, IpNotFoundError } from "../netns/errors.ts";
import { ipJson, type IpLink } from "../netns/ip.ts";
import { defaultRouteInterface, linkDriver, linkMtu, linkNames } from "../netns/links.ts";
import { sysctlSet } from "../netns/sysctl.ts";
import type { Logger } from "../lib/log.ts";
import type { NetConf } from "./config.ts";
import type {
  AddPlan,
  Attachment,
  FamAddr,
  LinkReport,
  ModeDriver,
  PodLinkState,
  PodNs,
  PodRoute,
  Probe,
} from "./driver.ts";
import { CniCode, CniError } from "./errors.ts";
import { batchOf, deleteLink, IpPodSide, linkAdd, report } from "./iplinks.ts";
import { ensureMasq, removeMasq } from "./masq.ts";
import { derivedMac, hostVethName } from "./names.ts";

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
    c.push(linkAdd(p.bridge, [["address", p.bridgeMac], ["mtu", p.mtu]], "bridge"));
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

/** The MTU for new links: configured, else the default-route interface's, else 1500. */
export function hostMtu(configured: number | undefined): number {
  if (configured) return configured;
  const uplink = defaultRouteInterface();
  return (uplink && linkMtu(uplink)) || 1500;
}

function notABridge(name: string, kind: string): CniError {
  return new CniError(
    CniCode.InvalidConfig,
    `invalid network config: bridge ${
      JSON.stringify(name)
    } exists but is a ${kind} link, not a bridge`,
  );
}

/**
 * Whether the bridge exists; error 7 naming the link and its kind when the name belongs
 * to a link that is not a bridge. Costs a procfs read and one ioctl (no process) on the
 * hot path; only a refusal asks ip for the link's kind.
 */
export async function checkBridge(name: string): Promise<boolean> {
  if (!linkNames().includes(name)) return false;
  const driver = linkDriver(name);
  if (driver === undefined) return false; // gone meanwhile: ADD creates it
  if (driver === "bridge") return true;
  let kind = driver;
  try {
    const link = (await ipJson<IpLink[]>(["-d", "link", "show", "dev", name]))[0];
    kind = link?.linkinfo?.info_kind ?? (driver ? `${driver} device` : "device");
  } catch {
    // the driver's name says enough
  }
  throw notABridge(name, kind || "non-bridge");
}

/** The host plan of an ADD: the bridge's config, what the probe found, IPAM's plan. */
export function hostPlan(
  conf: Pick<NetConf, "bridge" | "isGateway" | "hairpinMode" | "promiscMode">,
  bridgeExists: boolean,
  plan: AddPlan,
): HostPlan {
  return {
    bridge: conf.bridge,
    createBridge: !bridgeExists,
    // Seeded with the gateway too: every node's bridge gets its own MAC.
    bridgeMac: derivedMac(`bridge:${conf.bridge}:${plan.gateways[0]?.cidr ?? ""}`),
    mtu: plan.mtu,
    gateways: conf.isGateway ? plan.gateways.map((g) => ({ family: g.family, cidr: g.cidr })) : [],
    hostVeth: hostVethName(plan.att.containerID, plan.att.ifname),
    ifname: plan.att.ifname,
    podNetns: plan.att.netns,
    podMac: plan.podMac,
    hairpin: conf.hairpinMode,
    promisc: conf.promiscMode,
  };
}

/**
 * Runs the host side: the bridge first when it is missing (two ADDs racing to create it
 * both succeed: "exists" is fine), then one batch for the rest.
 */
async function runHostPlan(p: HostPlan, commands: string[][]): Promise<[IpLink, IpLink]> {
  let rest = commands;
  if (p.createBridge) {
    // A new bridge is created down, and DAD is turned off on it before it comes up: until
    // its link-local address has passed DAD (a second or more) the kernel sends no
    // neighbour solicitations for forwarded packets, so a pod's first packets from
    // another node would be lost.
    try {
      await batchOf(commands.slice(0, 1)).run();
    } catch (e) {
      if (!(e instanceof IpExistsError)) throw e; // a concurrent ADD made it
    }
    try {
      sysctlSet(`net/ipv6/conf/${p.bridge}/accept_dad`, 0);
    } catch {
      // IPv6 disabled on this host: nothing to wait for
    }
    rest = commands.slice(1);
  }
  try {
    const docs = await batchOf(rest).runJson<IpLink[]>({ details: true });
    const bridge = docs[0]?.[0];
    const hostVeth = docs[1]?.[0];
    if (!bridge || !hostVeth) throw new CniError(CniCode.Internal, "ip did not report the links");
    const kind = bridge.linkinfo?.info_kind;
    if (kind !== "bridge") throw notABridge(p.bridge, kind ?? "device");
    return [bridge, hostVeth];
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

/** Bridge mode's driver: `ip` processes, procfs and sysctls. */
export class BridgeDriver extends IpPodSide implements ModeDriver {
  #bridgeExists = false;
  constructor(readonly conf: NetConf, readonly log: Logger) {
    super();
  }

  async probe(pod: PodNs, att: Attachment): Promise<Probe> {
    const conf = this.conf;
    // The bridge may exist already: it must be a bridge, or ADD would put the gateway
    // address on (and set up) someone else's link.
    this.#bridgeExists = await checkBridge(conf.bridge);
    // Refuse a second ADD for the same attachment before touching anything (this also
    // protects a delegated IPAM plugin's allocation from our own rollback).
    const hostVeth = hostVethName(att.containerID, att.ifname);
    if (linkNames().includes(hostVeth)) {
      throw new CniError(
        CniCode.AttachmentExists,
        `container ${att.containerID} interface ${att.ifname} is already attached (host veth ${hostVeth} exists)`,
      );
    }
    this.refuseExistingIfname(pod, att);
    return { mtu: hostMtu(conf.mtu), mtuOrigin: conf.mtu ? "" : " (the uplink's)" };
  }

  prepare(_addresses: FamAddr[]): Promise<PodRoute[]> {
    return Promise.resolve([]);
  }

  async setupHost(_pod: PodNs, plan: AddPlan): Promise<LinkReport[]> {
    if (this.conf.isGateway) {
      if (plan.addresses.some((a) => a.family === 4)) sysctlSet("net.ipv4.ip_forward", 1);
      if (plan.addresses.some((a) => a.family === 6)) {
        sysctlSet("net.ipv6.conf.all.forwarding", 1);
      }
    }
    const p = hostPlan(this.conf, this.#bridgeExists, plan);
    const commands = hostCommands(p);
    this.log.debug("host side", { commands: commands.length });
    const [bridge, hostVeth] = await runHostPlan(p, commands);
    return [report(bridge, p.bridge), report(hostVeth, p.hostVeth)];
  }

  async undoHost(_pod: PodNs, plan: AddPlan): Promise<void> {
    await deleteLink(hostVethName(plan.att.containerID, plan.att.ifname));
  }

  async finish(plan: AddPlan): Promise<string | undefined> {
    if (this.conf.ipMasq) await ensureMasq(this.conf.name, plan.addresses.map((a) => a.cidr));
    return undefined;
  }

  describe(att: Attachment): Record<string, string> {
    return { hostVeth: hostVethName(att.containerID, att.ifname), bridge: this.conf.bridge };
  }

  /** The host veth (named from container ID + ifname: no state needed); the pod end goes with it. */
  async detach(att: Attachment): Promise<Record<string, string>> {
    const hostVeth = hostVethName(att.containerID, att.ifname);
    const existed = await deleteLink(hostVeth);
    this.log.debug(existed ? "host veth deleted" : "host veth already gone", { hostVeth });
    return { hostVeth };
  }

  async dropNetwork(): Promise<void> {
    await removeMasq(this.conf.name);
  }

  /** The host veth on the bridge. */
  async hostProblem(att: Attachment, _link: PodLinkState): Promise<string | undefined> {
    const hostVeth = hostVethName(att.containerID, att.ifname);
    let link: IpLink | undefined;
    try {
      link = (await ipJson<IpLink[]>(["link", "show", "dev", hostVeth]))[0];
    } catch (e) {
      if (!(e instanceof IpNotFoundError)) throw e;
    }
    if (!link) return `host veth ${hostVeth} is missing`;
    if (link.master !== this.conf.bridge) {
      return `host veth ${hostVeth} is not on bridge ${this.conf.bridge}`;
    }
    return undefined;
  }
}
