/**
 * What the `ip`-process drivers of both modes share: the pod side (one `ip -j -batch -`
 * in the pod's namespace: addresses, routes, the interface read back), CHECK's reads of
 * the pod, link deletion, and the word lists of `link add`. The planning functions are
 * pure and unit-tested without root.
 * @module
 */

import { IpNotFoundError } from "../netns/errors.ts";
import { type IpAddr, IpBatch, ipJson, type IpLink, type IpRoute } from "../netns/ip.ts";
import { linkNames } from "../netns/links.ts";
import { Netns } from "../netns/netns.ts";
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

/**
 * `link add name NAME [KEY VALUE]… type KIND [mode MODE]`, the attributes in the order
 * given, those without a value left out. The name follows its keyword, so ip never reads
 * a link called `help` or `up` as one.
 */
export function linkAdd(
  name: string,
  attrs: [string, string | number | undefined][],
  kind: string,
  mode?: string,
): string[] {
  const words = ["link", "add", "name", name];
  for (const [k, v] of attrs) if (v !== undefined) words.push(k, String(v));
  words.push("type", kind);
  if (mode !== undefined) words.push("mode", mode);
  return words;
}

export function batchOf(commands: string[][]): IpBatch {
  const b = new IpBatch();
  for (const c of commands) b.add(...c);
  return b;
}

/** An IpLink as ADD reports it, under the name ADD gave it. */
export function report(link: IpLink, name: string, sandbox?: string): LinkReport {
  const mac = link.address ?? "";
  return sandbox === undefined
    ? { name, mac, mtu: link.mtu }
    : { name, mac, sandbox, mtu: link.mtu };
}

/** The Netns behind a PodNs these drivers opened. */
export function netnsOf(pod: PodNs): Netns {
  if (!(pod instanceof Netns)) throw new TypeError("not a namespace an ip driver opened");
  return pod;
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

/** The pod-side methods both `ip` drivers share (see ModeDriver). */
export abstract class IpPodSide {
  openPod(path: string): PodNs {
    return openPodNetns({ netns: path });
  }

  async setupPod(pod: PodNs, plan: AddPlan): Promise<LinkReport> {
    const ns = netnsOf(pod);
    const ifname = plan.att.ifname;
    // The pod's addresses skip DAD (IPAM made them unique); its link-local should too, or
    // its first neighbour exchanges wait out DAD and cross-node packets stall for a second.
    try {
      sysctlSet(`net/ipv6/conf/${ifname}/accept_dad`, 0, { netns: ns });
    } catch {
      // IPv6 disabled in the pod
    }
    const commands = podCommands({ ifname, addresses: plan.addresses, routes: plan.routes });
    const docs = await batchOf(commands).runJson<IpLink[]>({ netns: ns });
    const link = docs[0]?.[0];
    if (!link) throw new CniError(CniCode.Internal, "ip did not report the pod interface");
    return report(link, ifname, plan.att.netns);
  }

  /** Error 101 when the pod has an interface of the name already. */
  protected refuseExistingIfname(pod: PodNs, att: { ifname: string; netns: string }): void {
    if (linkNames({ netns: netnsOf(pod) }).includes(att.ifname)) {
      throw new CniError(
        CniCode.AttachmentExists,
        `interface ${att.ifname} already exists in ${att.netns}`,
      );
    }
  }

  async podLink(pod: PodNs, ifname: string): Promise<PodLinkState | undefined> {
    let a: IpAddr | undefined;
    try {
      a = (await ipJson<IpAddr[]>(["-d", "addr", "show", "dev", ifname], {
        netns: netnsOf(pod),
      }))[0];
    } catch (e) {
      if (!(e instanceof IpNotFoundError)) throw e;
    }
    if (!a) return undefined;
    return {
      mac: a.address,
      addresses: a.addr_info.map((i) => `${i.local}/${i.prefixlen}`),
      kind: a.linkinfo?.info_kind,
      mode: (a.linkinfo?.info_data as { mode?: string } | undefined)?.mode,
    };
  }

  async podDefaultRoutes(pod: PodNs, family: 4 | 6): Promise<RouteState[]> {
    const routes = await ipJson<IpRoute[]>([`-${family}`, "route", "show", "default"], {
      netns: netnsOf(pod),
    });
    return routes.map((r) => ({ gateway: r.gateway, dev: r.dev }));
  }
}
