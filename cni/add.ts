/**
 * ADD: IPAM → host side (bridge, veth) → pod side (addresses, routes) → result.
 * Every side effect registers its undo; a failure anywhere releases the addresses and
 * deletes the veth before the error is reported.
 * @module
 */

import { parseIpPrefix } from "../ipam/addr.ts";
import { ipJson, type IpLink } from "../netns/ip.ts";
import {
  defaultRouteInterface,
  linkAddresses,
  linkDriver,
  linkMtu,
  linkNames,
} from "../netns/links.ts";
import { sysctlSet } from "../netns/sysctl.ts";
import {
  deleteLink,
  type FamAddr,
  famAddr,
  hostCommands,
  type PodRoute,
  podRoutes,
  setupHost,
  setupPod,
} from "./bridge.ts";
import { IPV6_MIN_MTU, type SlaveConf } from "./config.ts";
import { faultPoint, type VerbContext } from "./context.ts";
import { openPodNetns } from "./env.ts";
import type { Netns } from "../netns/netns.ts";
import { CniCode, CniError } from "./errors.ts";
import { ipamFor } from "./ipam.ts";
import {
  checkShimRoutes,
  createSlave,
  ensureShim,
  resolveMaster,
  shimCommands,
  shimName,
  shimPodRoutes,
  slaveCommands,
  subnetsOf,
} from "./macvlan.ts";
import { ensureMasq } from "./masq.ts";
import { derivedMac, hostVethName } from "./names.ts";
import { mergeResults, type Result } from "./result.ts";

/** The MTU for new links: configured, else the default-route interface's, else 1500. */
export function hostMtu(configured: number | undefined): number {
  if (configured) return configured;
  const uplink = defaultRouteInterface();
  return (uplink && linkMtu(uplink)) || 1500;
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
  throw new CniError(
    CniCode.InvalidConfig,
    `invalid network config: bridge ${JSON.stringify(name)} exists but is a ${
      kind || "non-bridge"
    } link, not a bridge`,
  );
}

/**
 * Where an ADD's time goes: `mark(phase)` records the ms since the verb started; `timing()`
 * is the debug line's fields, with `verbStart` (ms from process start to the verb: module
 * loading) and `total`. The CNI benchmarks read this line.
 */
function phaseTimer() {
  const t0 = performance.now();
  const marks: Record<string, string> = {};
  return {
    mark: (name: string) => (marks[name] = (performance.now() - t0).toFixed(1)),
    timing: () => ({
      ...marks,
      verbStart: t0.toFixed(1),
      total: (performance.now() - t0).toFixed(1),
    }),
  };
}

/** An ADD for an interface the pod already has is refused before anything is touched. */
function refuseExistingIfname(env: VerbContext["env"], pod: Netns): void {
  if (linkNames({ netns: pod }).includes(env.ifname)) {
    throw new CniError(
      CniCode.AttachmentExists,
      `interface ${env.ifname} already exists in ${env.netns}`,
    );
  }
}

/** Allocates the addresses and registers their release as the first undo of the ADD. */
async function allocate(ctx: VerbContext, undo: AsyncDisposableStack) {
  const ipam = ipamFor(ctx);
  const got = await ipam.add();
  undo.defer(async () => {
    await ipam.del().catch((e) => ctx.log.warn("rollback: IPAM release failed", { error: e }));
  });
  return got;
}

export async function cmdAdd(ctx: VerbContext): Promise<Result> {
  if (ctx.conf.slave) return await cmdAddSlave(ctx, ctx.conf.slave);
  const { env, conf, log } = ctx;
  const { mark, timing } = phaseTimer();
  const hostVeth = hostVethName(env.containerID, env.ifname);
  using pod = openPodNetns(env);
  // The bridge may exist already: it must be a bridge, or ADD would put the gateway
  // address on (and set up) someone else's link. Checked before anything is touched.
  const bridgeExists = await checkBridge(conf.bridge);

  // Refuse a second ADD for the same attachment before touching anything (this also
  // protects a delegated IPAM plugin's allocation from our own rollback).
  if (linkNames().includes(hostVeth)) {
    throw new CniError(
      CniCode.AttachmentExists,
      `container ${env.containerID} interface ${env.ifname} is already attached (host veth ${hostVeth} exists)`,
    );
  }
  refuseExistingIfname(env, pod);

  await using undo = new AsyncDisposableStack();
  const got = await allocate(ctx, undo);
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
  const v6 = addrs.find((a) => a.family === 6);
  if (v6 && mtu < IPV6_MIN_MTU) {
    throw new CniError(
      CniCode.InvalidConfig,
      `invalid network config: mtu ${mtu}${
        conf.mtu ? "" : " (the uplink's)"
      } is below ${IPV6_MIN_MTU}, the least IPv6 works with, and IPAM gave ${v6.cidr}`,
    );
  }
  const podMac = conf.mac ?? env.args.mac?.toLowerCase();

  if (conf.isGateway) {
    if (addrs.some((a) => a.family === 4)) sysctlSet("net.ipv4.ip_forward", 1);
    if (addrs.some((a) => a.family === 6)) sysctlSet("net.ipv6.conf.all.forwarding", 1);
  }
  const hostPlan = {
    bridge: conf.bridge,
    createBridge: !bridgeExists,
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
  log.debug("timing", timing());
  log.info("attached", {
    ips: got.ips.map((i) => i.address).join(","),
    hostVeth,
    bridge: conf.bridge,
  });
  return conf.prevResult ? mergeResults(conf.prevResult, result) : result;
}

/** The IPv6 MTU floor, checked after IPAM (error 7; the caller's undo releases). */
function checkV6Mtu(addrs: FamAddr[], mtu: number, why: string): void {
  const v6 = addrs.find((a) => a.family === 6);
  if (v6 && mtu < IPV6_MIN_MTU) {
    throw new CniError(
      CniCode.InvalidConfig,
      `invalid network config: mtu ${mtu}${why} is below ${IPV6_MIN_MTU}, the least IPv6 works with, and IPAM gave ${v6.cidr}`,
    );
  }
}

/**
 * ADD in macvlan/ipvlan mode: master checks → IPAM → the slave, created in the pod's
 * namespace → pod side → the host shim (optional) → result. Same undo discipline as
 * bridge mode: a failure releases the addresses and deletes the pod's interface.
 */
async function cmdAddSlave(ctx: VerbContext, slave: SlaveConf): Promise<Result> {
  const { env, conf, log } = ctx;
  const { mark, timing } = phaseTimer();
  using pod = openPodNetns(env);
  // Everything about the master is decided before anything is touched.
  const master = resolveMaster(slave, conf.mtu);
  refuseExistingIfname(env, pod);

  await using undo = new AsyncDisposableStack();
  const got = await allocate(ctx, undo);
  mark("ipam");
  faultPoint(ctx, "after-ipam");

  const addrs: FamAddr[] = got.ips.map((i) => famAddr(i.address));
  const subnets = subnetsOf(got.ips.map((i) => i.address));
  if (slave.hostShim) checkShimRoutes(slave.kind, master.name, subnets);
  const mtu = conf.mtu ?? master.mtu;
  checkV6Mtu(addrs, mtu, conf.mtu ? "" : ` (master ${master.name}'s)`);
  const plan = {
    kind: slave.kind,
    master: master.name,
    linkMode: slave.linkMode,
    ifname: env.ifname,
    podNetns: env.netns,
    mtu,
    podMac: conf.mac ?? env.args.mac?.toLowerCase(),
  };
  log.debug("slave", { command: slaveCommands(plan)[0]!.join(" ") });
  undo.defer(async () => {
    await deleteLink(env.ifname, pod).catch((e) =>
      log.warn("rollback: pod interface delete failed", { error: e })
    );
  });
  // An existing shim only needs the pod subnet's route: in the same ip process.
  const shim = slave.hostShim ? shimName(slave.kind, master.name) : undefined;
  const shimReady = shim !== undefined && linkNames().includes(shim);
  await createSlave(
    plan,
    shimReady
      ? shimCommands({
        kind: slave.kind,
        name: shim,
        master: master.name,
        linkMode: slave.linkMode,
        create: false,
        nodeAddrs: [],
        subnets,
      })
      : [],
  );
  mark("host");
  faultPoint(ctx, "after-host");

  const gateways = got.ips.flatMap((i) =>
    i.gateway ? [{ family: famAddr(i.address).family, gw: i.gateway }] : []
  );
  // With the shim, the node's addresses are on-link for the pod: the shim answers for them.
  const nodeAddrs = slave.hostShim ? linkAddresses(master.name) : [];
  const routes: PodRoute[] = [
    ...podRoutes(gateways, conf.isDefaultGateway, got.routes),
    ...shimPodRoutes(nodeAddrs, addrs.map((a) => a.family)),
  ];
  const podLink = await setupPod({ ifname: env.ifname, addresses: addrs, routes }, pod);
  mark("pod");
  faultPoint(ctx, "after-pod");

  if (slave.hostShim && !shimReady) {
    await ensureShim(
      slave.kind,
      master.name,
      slave.linkMode,
      subnets,
      nodeAddrs,
    );
    mark("shim");
  }

  const result: Result = {
    interfaces: [
      { name: env.ifname, mac: podLink.address ?? "", sandbox: env.netns, mtu: podLink.mtu },
    ],
    ips: got.ips.map((i) => ({ ...i, interface: 0 })),
    routes: routes.map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) })),
  };
  const dns = conf.dns ?? got.dns;
  if (dns) result.dns = dns;
  undo.move();
  log.debug("timing", timing());
  log.info("attached", {
    ips: got.ips.map((i) => i.address).join(","),
    [slave.kind]: `${master.name} ${slave.linkMode}`,
    ...(shim ? { shim } : {}),
  });
  return conf.prevResult ? mergeResults(conf.prevResult, result) : result;
}
