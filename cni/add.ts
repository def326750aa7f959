/**
 * ADD: IPAM → host side (bridge, veth) → pod side (addresses, routes) → result.
 * Every side effect registers its undo; a failure anywhere releases the addresses and
 * deletes the veth before the error is reported.
 * @module
 */

import { parseIpPrefix } from "../ipam/addr.ts";
import { defaultRouteInterface, linkMtu, linkNames } from "../netns/links.ts";
import { Netns } from "../netns/netns.ts";
import { sysctlSet } from "../netns/sysctl.ts";
import {
  deleteLink,
  type FamAddr,
  famAddr,
  hostCommands,
  podRoutes,
  setupHost,
  setupPod,
} from "./bridge.ts";
import { faultPoint, type VerbContext } from "./context.ts";
import { CniCode, CniError } from "./errors.ts";
import { ipamFor } from "./ipam.ts";
import { ensureMasq } from "./masq.ts";
import { derivedMac, hostVethName } from "./names.ts";
import { mergeResults, type Result } from "./result.ts";

/** The MTU for new links: configured, else the default-route interface's, else 1500. */
export function hostMtu(configured: number | undefined): number {
  if (configured) return configured;
  const uplink = defaultRouteInterface();
  return (uplink && linkMtu(uplink)) || 1500;
}

export async function cmdAdd(ctx: VerbContext): Promise<Result> {
  const { env, conf, log } = ctx;
  const t0 = performance.now();
  const marks: Record<string, string> = {};
  const mark = (name: string) => (marks[name] = (performance.now() - t0).toFixed(1));
  const hostVeth = hostVethName(env.containerID, env.ifname);
  using pod = Netns.open(env.netns);

  // Refuse a second ADD for the same attachment before touching anything (this also
  // protects a delegated IPAM plugin's allocation from our own rollback).
  if (linkNames().includes(hostVeth)) {
    throw new CniError(
      CniCode.AttachmentExists,
      `container ${env.containerID} interface ${env.ifname} is already attached (host veth ${hostVeth} exists)`,
    );
  }
  if (linkNames({ netns: pod }).includes(env.ifname)) {
    throw new CniError(
      CniCode.AttachmentExists,
      `interface ${env.ifname} already exists in ${env.netns}`,
    );
  }

  await using undo = new AsyncDisposableStack();
  const ipam = ipamFor(ctx);
  const got = await ipam.add();
  undo.defer(async () => {
    await ipam.del().catch((e) => log.warn("rollback: IPAM release failed", { error: e }));
  });
  mark("ipam");
  log.debug("addresses allocated", { ips: got.ips.map((i) => i.address).join(",") });
  faultPoint(ctx, "after-ipam");

  const addrs: FamAddr[] = got.ips.map((i) => famAddr(i.address));
  const gateways = got.ips.flatMap((i) => {
    if (!i.gateway) return [];
    const { prefix } = parseIpPrefix(i.address);
    const fam = famAddr(i.address).family;
    return [{ family: fam, gw: i.gateway, cidr: `${i.gateway}/${prefix}` }];
  });
  const mtu = hostMtu(conf.mtu);
  const podMac = conf.mac ?? env.args.mac?.toLowerCase();

  if (conf.isGateway) {
    if (addrs.some((a) => a.family === 4)) sysctlSet("net.ipv4.ip_forward", 1);
    if (addrs.some((a) => a.family === 6)) sysctlSet("net.ipv6.conf.all.forwarding", 1);
  }
  const hostPlan = {
    bridge: conf.bridge,
    createBridge: !linkNames().includes(conf.bridge),
    // Seeded with the gateway too: every node's bridge gets its own MAC.
    bridgeMac: derivedMac(`bridge:${conf.bridge}:${gateways[0]?.cidr ?? ""}`),
    mtu,
    gateways: conf.isGateway ? gateways.map((g) => ({ family: g.family, cidr: g.cidr })) : [],
    hostVeth,
    ifname: env.ifname,
    podNetns: env.netns,
    podMac,
    hairpin: conf.hairpinMode,
    promisc: conf.promiscMode,
  };
  log.debug("host side", { commands: hostCommands(hostPlan).length });
  undo.defer(async () => {
    await deleteLink(hostVeth).catch((e) => log.warn("rollback: veth delete failed", { error: e }));
  });
  const links = await setupHost(hostPlan);
  mark("host");
  faultPoint(ctx, "after-host");

  const routes = podRoutes(
    gateways.map((g) => ({ family: g.family, gw: g.gw })),
    conf.isDefaultGateway,
    got.routes,
  );
  const podLink = await setupPod({ ifname: env.ifname, addresses: addrs, routes }, pod);
  mark("pod");
  faultPoint(ctx, "after-pod");

  if (conf.ipMasq) {
    const subnets = got.ips.map((i) => i.address);
    await ensureMasq(conf.name, subnets);
  }

  const result: Result = {
    interfaces: [
      { name: conf.bridge, mac: links.bridge.address ?? "", mtu: links.bridge.mtu },
      { name: hostVeth, mac: links.hostVeth.address ?? "", mtu: links.hostVeth.mtu },
      { name: env.ifname, mac: podLink.address ?? "", sandbox: env.netns, mtu: podLink.mtu },
    ],
    ips: got.ips.map((i) => ({ ...i, interface: 2 })),
    routes: routes.map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) })),
  };
  const dns = conf.dns ?? got.dns;
  if (dns) result.dns = dns;
  undo.move(); // success: keep everything
  // Milliseconds since the verb started, and since the process started (module loading).
  log.debug("timing", {
    ...marks,
    verbStart: t0.toFixed(1),
    total: (performance.now() - t0).toFixed(1),
  });
  log.info("attached", {
    ips: got.ips.map((i) => i.address).join(","),
    hostVeth,
    bridge: conf.bridge,
  });
  return conf.prevResult ? mergeResults(conf.prevResult, result) : result;
}
