/**
 * Bridge mode: the kernel work of attaching a pod to a Linux bridge, as a
 * {@link ModeDriver} that talks rtnetlink (no process).
 *
 * The host side creates what is missing (bridge, gateway addresses, the veth pair with
 * its pod end created straight inside the pod's namespace, on the bridge and up) and
 * reads back the two links it reports; the pod side (links.ts) addresses the interface,
 * adds routes and reads the interface back. What each side does is decided once by pure
 * planning functions (unit-tested without root) as a list of steps; the decision inputs
 * are one link lookup (does the bridge exist, is it a bridge) and procfs (the uplink MTU).
 * @module
 */

import type { Link } from "../netns/netlink/link.ts";
import type { Rtnl } from "../netns/netlink/rtnl.ts";
import { IpExistsError } from "../netns/errors.ts";
import { defaultRouteInterface, linkDriver, linkMtu } from "../netns/links.ts";
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
import {
  addrStep,
  deleteLink,
  deleteLinkAsync,
  mustLink,
  podOf,
  report,
  RtnlDriver,
  runStep,
  runSteps,
  type Step,
} from "./links.ts";
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
  /** The pod namespace path (CNI_NETNS), for messages: the veth's pod end goes there. */
  podNetns: string;
  podMac?: string | undefined;
  hairpin: boolean;
  promisc: boolean;
}

/**
 * The host-side steps: the bridge (created down when missing; up), its gateway addresses,
 * the veth pair (the pod end created in the pod's namespace; the host end on the bridge
 * and up), the port's hairpin mode.
 */
export function hostSteps(p: HostPlan): Step[] {
  const s: Step[] = [];
  if (p.createBridge) {
    s.push({
      op: "link-add",
      link: { kind: "bridge", name: p.bridge, mac: p.bridgeMac, mtu: p.mtu },
    });
  }
  s.push({ op: "link-set", link: p.bridge, change: { up: true } });
  for (const g of p.gateways) s.push(addrStep(p.bridge, g, { replace: true }));
  if (p.promisc) s.push({ op: "link-set", link: p.bridge, change: { promisc: true } });
  s.push({
    op: "link-add",
    link: {
      kind: "veth",
      name: p.hostVeth,
      mtu: p.mtu,
      master: p.bridge,
      up: true,
      peer: { name: p.ifname, mtu: p.mtu, ...(p.podMac ? { mac: p.podMac } : {}), inPod: true },
    },
  });
  if (p.hairpin) s.push({ op: "link-set", link: p.hostVeth, change: { hairpin: true } });
  return s;
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
 * to a link that is not a bridge. One link lookup; a refusal of a link without a kind (a
 * physical one) asks its driver's name (one ioctl).
 */
export function checkBridge(rtnl: Rtnl, name: string): boolean {
  const link = rtnl.link(name);
  if (!link) return false;
  if (link.kind === "bridge") return true;
  let kind = link.kind;
  if (kind === undefined) {
    const driver = linkDriver(name);
    kind = driver ? `${driver} device` : "non-bridge";
  }
  throw notABridge(name, kind);
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
 * both succeed: "exists" is fine), then the rest; the two links ADD reports.
 */
function runHostPlan(rtnl: Rtnl, pod: PodNs, p: HostPlan, steps: Step[]): [Link, Link] {
  let rest = steps;
  if (p.createBridge) {
    // A new bridge is created down, and DAD is turned off on it before it comes up: until
    // its link-local address has passed DAD (a second or more) the kernel sends no
    // neighbour solicitations for forwarded packets, so a pod's first packets from
    // another node would be lost.
    try {
      runStep(rtnl, steps[0]!);
    } catch (e) {
      if (!(e instanceof IpExistsError)) throw e; // a concurrent ADD made it
    }
    try {
      sysctlSet(`net/ipv6/conf/${p.bridge}/accept_dad`, 0);
    } catch {
      // IPv6 disabled on this host: nothing to wait for
    }
    rest = steps.slice(1);
  }
  runSteps(
    rtnl,
    rest,
    podOf(pod).netns,
    (s, e) =>
      s.op === "link-add" && s.link.kind === "veth" && e instanceof IpExistsError
        ? new CniError(
          CniCode.AttachmentExists,
          `interface ${p.ifname} already exists in ${p.podNetns} or host veth ${p.hostVeth} exists`,
          e.stderr,
        )
        : e,
  );
  const bridge = mustLink(rtnl, p.bridge);
  if (bridge.kind !== "bridge") throw notABridge(p.bridge, bridge.kind ?? "device");
  return [bridge, mustLink(rtnl, p.hostVeth)];
}

/** The names GC may delete: ohno's host veths (`veth` + 11 hex digits). */
const OUR_VETH = /^veth[0-9a-f]{11}$/;

/** Bridge mode's driver: rtnetlink, procfs and sysctls. */
export class BridgeDriver extends RtnlDriver implements ModeDriver {
  #bridgeExists = false;
  constructor(readonly conf: NetConf, readonly log: Logger) {
    super();
  }

  probe(pod: PodNs, att: Attachment): Promise<Probe> {
    const conf = this.conf;
    // The bridge may exist already: it must be a bridge, or ADD would put the gateway
    // address on (and set up) someone else's link.
    this.#bridgeExists = checkBridge(this.host, conf.bridge);
    // Refuse a second ADD for the same attachment before touching anything (this also
    // protects a delegated IPAM plugin's allocation from our own rollback).
    const hostVeth = hostVethName(att.containerID, att.ifname);
    if (this.host.link(hostVeth)) {
      throw new CniError(
        CniCode.AttachmentExists,
        `container ${att.containerID} interface ${att.ifname} is already attached (host veth ${hostVeth} exists)`,
      );
    }
    this.refuseExistingIfname(pod, att);
    return Promise.resolve({
      mtu: hostMtu(conf.mtu),
      mtuOrigin: conf.mtu ? "" : " (the uplink's)",
    });
  }

  prepare(_addresses: FamAddr[]): Promise<PodRoute[]> {
    return Promise.resolve([]);
  }

  setupHost(pod: PodNs, plan: AddPlan): Promise<LinkReport[]> {
    if (this.conf.isGateway) {
      if (plan.addresses.some((a) => a.family === 4)) sysctlSet("net.ipv4.ip_forward", 1);
      if (plan.addresses.some((a) => a.family === 6)) {
        sysctlSet("net.ipv6.conf.all.forwarding", 1);
      }
    }
    const p = hostPlan(this.conf, this.#bridgeExists, plan);
    const steps = hostSteps(p);
    this.log.debug("host side", { steps: steps.length });
    const [bridge, hostVeth] = runHostPlan(this.host, pod, p, steps);
    return Promise.resolve([report(bridge, p.bridge), report(hostVeth, p.hostVeth)]);
  }

  undoHost(_pod: PodNs, plan: AddPlan): Promise<void> {
    deleteLink(this.host, hostVethName(plan.att.containerID, plan.att.ifname));
    return Promise.resolve();
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
    const existed = await deleteLinkAsync(this.host, hostVeth);
    this.log.debug(existed ? "host veth deleted" : "host veth already gone", { hostVeth });
    return { hostVeth };
  }

  async dropNetwork(): Promise<void> {
    await removeMasq(this.conf.name);
  }

  /** The host veth on the bridge. */
  hostProblem(att: Attachment, _link: PodLinkState): Promise<string | undefined> {
    const hostVeth = hostVethName(att.containerID, att.ifname);
    const link = this.host.link(hostVeth);
    if (!link) return Promise.resolve(`host veth ${hostVeth} is missing`);
    const master = link.masterIndex === undefined
      ? undefined
      : this.host.link(link.masterIndex)?.name;
    if (master !== this.conf.bridge) {
      return Promise.resolve(`host veth ${hostVeth} is not on bridge ${this.conf.bridge}`);
    }
    return Promise.resolve(undefined);
  }

  /** ohno's host veths on the bridge that belong to no attachment in `keep`. */
  collect(keep: { containerID: string; ifname: string }[]): Promise<unknown[]> {
    const names = new Set(keep.map((a) => hostVethName(a.containerID, a.ifname)));
    const errors: unknown[] = [];
    let ports: Link[] = [];
    try {
      ports = this.host.links().filter((l) => l.master === this.conf.bridge);
    } catch (e) {
      errors.push(e);
    }
    for (const p of ports) {
      if (!OUR_VETH.test(p.name) || names.has(p.name)) continue;
      try {
        if (deleteLink(this.host, p.name)) {
          this.log.info("GC: deleted stale host veth", { hostVeth: p.name });
        }
      } catch (e) {
        errors.push(e);
      }
    }
    return Promise.resolve(errors);
  }

  /** Nothing to check on the node: ADD creates what is missing. */
  status(): Promise<void> {
    return Promise.resolve();
  }
}
