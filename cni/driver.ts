/**
 * The seam between the CNI verbs and the kernel. Each mode (bridge: `bridge.ts`;
 * macvlan/ipvlan: `macvlan.ts`) is a {@link ModeDriver}: it reads and changes the node and
 * the pod's namespace and nothing else. The verbs (`add.ts`, `del.ts`, `check.ts`) decide,
 * call IPAM, keep the undo stack and build the result; they never touch the kernel.
 *
 * The driver's methods take typed plans and values (addresses, routes, names), never
 * command lines: both drivers talk rtnetlink (`links.ts`), no process. A driver is made
 * for one CNI call (`driverFor` in `modes.ts`), may keep what it learned in one step for
 * the next (bridge: does the bridge exist; macvlan: the master) and holds its host-side
 * socket until it is disposed at the end of the call.
 *
 * Planning helpers every mode shares live here too: pure, unit-tested without root.
 * @module
 */

import { parseIpPrefix } from "../ipam/addr.ts";

/** An address to put on the bridge (`10.22.0.1/16`) or the pod (`10.22.0.5/16`). */
export interface FamAddr {
  family: 4 | 6;
  /** ADDRESS/PREFIX */
  cidr: string;
}

/** An IPAM gateway: `gw` the address, `cidr` the address with the subnet's prefix. */
export interface Gateway {
  family: 4 | 6;
  gw: string;
  cidr: string;
}

export interface PodRoute {
  dst: string;
  gw?: string | undefined;
}

/** One attachment, as CNI names it. */
export interface Attachment {
  containerID: string;
  ifname: string;
  /** CNI_NETNS: the pod namespace's path; empty in a DEL that has none. */
  netns: string;
}

/** An open pod network namespace (CNI_NETNS), opaque to the verbs; closed on dispose. */
export interface PodNs extends Disposable {
  readonly path: string;
}

/** What ADD learned from the node before touching anything. */
export interface Probe {
  /** The MTU of the links ADD creates: configured, else the mode's default. */
  mtu: number;
  /** Where an unconfigured `mtu` came from, for messages (` (the uplink's)`); else "". */
  mtuOrigin: string;
}

/** Everything ADD does to the node and the pod, decided after IPAM. */
export interface AddPlan {
  att: Attachment;
  mtu: number;
  /** The pod interface's MAC (config `mac` or CNI_ARGS MAC=); else the kernel's choice. */
  podMac?: string | undefined;
  /** IPAM's addresses for the pod. */
  addresses: FamAddr[];
  /** IPAM's gateways. */
  gateways: Gateway[];
  /** The pod's routes, in the order they are added. */
  routes: PodRoute[];
}

/** An interface as ADD reports it. */
export interface LinkReport {
  name: string;
  mac: string;
  mtu: number;
  /** Set for the pod's interface: CNI_NETNS. */
  sandbox?: string;
}

/** The pod interface as CHECK finds it. */
export interface PodLinkState {
  mac?: string | undefined;
  /** ADDRESS/PREFIX of every address on it. */
  addresses: string[];
  /** The link's kind (`veth`, `macvlan`, …) and, for slaves, its mode. */
  kind?: string | undefined;
  mode?: string | undefined;
}

/** A default route as CHECK finds it. */
export interface RouteState {
  gateway?: string | undefined;
  dev?: string | undefined;
}

/**
 * A mode's kernel work. Errors: CniError with the code the verb reports, or the kernel
 * layer's typed errors (netns/errors.ts), which `toCniError` maps.
 */
export interface ModeDriver extends Disposable {
  /** Opens CNI_NETNS; error 4 when it does not exist or is the plugin's own namespace. */
  openPod(path: string): PodNs;
  /**
   * ADD, before anything is touched: refuses a config the node cannot serve (7) and an
   * attachment that exists already (101); the facts ADD plans with.
   */
  probe(pod: PodNs, att: Attachment): Promise<Probe>;
  /**
   * ADD after IPAM, still touching nothing: checks that need the addresses (7) and the
   * routes the mode adds to the pod's (macvlan's shim: on-link routes to the node).
   */
  prepare(addresses: FamAddr[]): Promise<PodRoute[]>;
  /** ADD: the host side; the host's interfaces for the result (pod's last). */
  setupHost(pod: PodNs, plan: AddPlan): Promise<LinkReport[]>;
  /** ADD's rollback of {@link setupHost}, also after a partial one; idempotent. */
  undoHost(pod: PodNs, plan: AddPlan): Promise<void>;
  /** ADD: the pod side (addresses, routes); the pod's interface as the kernel has it. */
  setupPod(pod: PodNs, plan: AddPlan): Promise<LinkReport>;
  /** ADD's last step once the pod works; names the timing phase when it did something. */
  finish(plan: AddPlan): Promise<string | undefined>;
  /** Log fields naming what ADD attached (after {@link probe}). */
  describe(att: Attachment): Record<string, string>;
  /**
   * DEL: removes the attachment's links; success when they, or the pod's namespace, are
   * gone already. Log fields naming what was detached.
   */
  detach(att: Attachment): Promise<Record<string, string>>;
  /** DEL, when the network's last address is released: what ADD set up network-wide. */
  dropNetwork(): Promise<void>;
  /** CHECK: the pod interface, undefined when it is missing. */
  podLink(pod: PodNs, ifname: string): Promise<PodLinkState | undefined>;
  /** CHECK: the pod's default routes of a family. */
  podDefaultRoutes(pod: PodNs, family: 4 | 6): Promise<RouteState[]>;
  /**
   * CHECK: how the mode's side of the attachment differs from what ADD made (a sentence),
   * or undefined; error 7 when the node no longer fits the config.
   */
  hostProblem(att: Attachment, link: PodLinkState): Promise<string | undefined>;
  /**
   * GC: removes what the mode left on the node for attachments not in `keep` (bridge: the
   * stale host veths on the bridge). Goes on past a failure; returns the failures.
   */
  collect(keep: { containerID: string; ifname: string }[]): Promise<unknown[]>;
  /** STATUS: throws (a CniError, code 7) when the node cannot serve an ADD of the mode. */
  status(): Promise<void>;
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
    const key = r.dst === "default" ? "0.0.0.0/0" : r.dst;
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

/** Family and prefix of an `ADDRESS/PREFIX`. */
export function famAddr(cidr: string): FamAddr {
  const { ip } = parseIpPrefix(cidr);
  return { family: ip.family, cidr };
}
