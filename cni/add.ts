/**
 * ADD: probe the node → IPAM → host side → pod side → the mode's last step → result.
 * The kernel work is the mode driver's (ctx.driver); this file decides and keeps the
 * undo stack: every side effect registers its undo, and a failure anywhere undoes the
 * host side and releases the addresses (in that order) before the error is reported.
 * @module
 */

import { IPV6_MIN_MTU } from "./config.ts";
import { faultPoint, type PodVerbContext } from "./context.ts";
import { type AddPlan, famAddr, type Gateway, podRoutes } from "./driver.ts";
import { CniCode, CniError } from "./errors.ts";
import { parseIpPrefix } from "../ipam/addr.ts";
import { mergeResults, type Result } from "./result.ts";

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

export async function cmdAdd(ctx: PodVerbContext): Promise<Result> {
  const { env, conf, log, driver, ipam } = ctx;
  const { mark, timing } = phaseTimer();
  const att = { containerID: env.containerID, ifname: env.ifname, netns: env.netns };
  using pod = driver.openPod(env.netns);
  // Everything about the node is decided before anything is touched (errors 7, 101).
  const probe = await driver.probe(pod, att);
  mark("probe");

  await using undo = new AsyncDisposableStack();
  const got = await ipam.add();
  undo.defer(async () => {
    await ipam.del().catch((e) => log.warn("rollback: IPAM release failed", { error: e }));
  });
  mark("ipam");
  log.debug("addresses allocated", { ips: got.ips.map((i) => i.address).join(",") });
  await faultPoint(ctx, "after-ipam");

  const addresses = got.ips.map((i) => famAddr(i.address));
  const gateways: Gateway[] = got.ips.flatMap((i) => {
    if (!i.gateway) return [];
    const { prefix } = parseIpPrefix(i.address);
    return [{ family: famAddr(i.address).family, gw: i.gateway, cidr: `${i.gateway}/${prefix}` }];
  });
  const extraRoutes = await driver.prepare(addresses);
  const v6 = addresses.find((a) => a.family === 6);
  if (v6 && probe.mtu < IPV6_MIN_MTU) {
    throw new CniError(
      CniCode.InvalidConfig,
      `invalid network config: mtu ${probe.mtu}${probe.mtuOrigin} is below ${IPV6_MIN_MTU}, the least IPv6 works with, and IPAM gave ${v6.cidr}`,
    );
  }
  const plan: AddPlan = {
    att,
    mtu: probe.mtu,
    podMac: conf.mac ?? env.args.mac?.toLowerCase(),
    addresses,
    gateways,
    routes: [...podRoutes(gateways, conf.isDefaultGateway, got.routes), ...extraRoutes],
  };

  undo.defer(async () => {
    try {
      await driver.undoHost(pod, plan);
    } catch (e) {
      log.warn("rollback: host side undo failed", { error: e });
    }
  });
  const hostLinks = await driver.setupHost(pod, plan);
  mark("host");
  await faultPoint(ctx, "after-host");

  const podLink = await driver.setupPod(pod, plan);
  mark("pod");
  await faultPoint(ctx, "after-pod");

  const last = await driver.finish(plan);
  if (last) mark(last);

  const result: Result = {
    interfaces: [...hostLinks, podLink],
    ips: got.ips.map((i) => ({ ...i, interface: hostLinks.length })),
    routes: plan.routes.map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) })),
  };
  const dns = conf.dns ?? got.dns;
  if (dns) result.dns = dns;
  undo.move(); // success: keep everything
  log.debug("timing", timing());
  log.info("attached", {
    ips: got.ips.map((i) => i.address).join(","),
    ...driver.describe(att),
  });
  return conf.prevResult ? mergeResults(conf.prevResult, result) : result;
}
