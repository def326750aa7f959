/**
 * CHECK (0.4.0+): is the attachment still as ADD left it? The pod interface with the
 * addresses of prevResult, the pod's default routes, the mode's side (the driver reads
 * it), and IPAM still holding the addresses. Prints nothing on success.
 * @module
 */

import type { PodVerbContext } from "./context.ts";
import { CniCode, CniError } from "./errors.ts";
import { versionAtLeast } from "./versions.ts";

function failed(msg: string): CniError {
  return new CniError(CniCode.CheckFailed, `CHECK: ${msg}`);
}

export async function cmdCheck(ctx: PodVerbContext): Promise<void> {
  const { env, conf, driver, ipam } = ctx;
  if (!versionAtLeast(conf.cniVersion, "0.4.0")) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `CHECK needs cniVersion 0.4.0 or later, the config says ${conf.cniVersion}`,
    );
  }
  const prev = conf.prevResult;
  if (!prev) {
    throw new CniError(CniCode.InvalidConfig, "invalid network config: CHECK needs prevResult");
  }
  const att = { containerID: env.containerID, ifname: env.ifname, netns: env.netns };
  using pod = driver.openPod(env.netns);

  // Pod side: the interface and its addresses.
  const link = await driver.podLink(pod, env.ifname);
  if (!link) throw failed(`interface ${env.ifname} is missing from ${env.netns}`);
  const have = new Set(link.addresses);
  const podIndex = (prev.interfaces ?? []).findIndex((i) =>
    i.name === env.ifname && (i.sandbox === undefined || i.sandbox === env.netns)
  );
  const mine = (prev.ips ?? []).filter((ip) =>
    ip.interface === undefined || ip.interface === podIndex
  );
  for (const ip of mine) {
    if (!have.has(ip.address)) throw failed(`address ${ip.address} is missing from ${env.ifname}`);
  }
  const podMac = podIndex >= 0 ? prev.interfaces?.[podIndex]?.mac : undefined;
  if (podMac && link.mac && podMac.toLowerCase() !== link.mac.toLowerCase()) {
    throw failed(`${env.ifname} has MAC ${link.mac}, prevResult says ${podMac}`);
  }

  // Pod side: default routes through the gateways ADD configured.
  if (conf.isDefaultGateway) {
    for (const fam of [4, 6] as const) {
      const ip = mine.find((i) => (i.address.includes(":") ? 6 : 4) === fam && i.gateway);
      if (!ip) continue;
      const routes = await driver.podDefaultRoutes(pod, fam);
      if (!routes.some((r) => r.gateway === ip.gateway && r.dev === env.ifname)) {
        throw failed(`default route via ${ip.gateway} dev ${env.ifname} is missing`);
      }
    }
  }

  // The mode's side: bridge, the host veth on the bridge; macvlan/ipvlan, the master and
  // the pod interface's kind and mode.
  const problem = await driver.hostProblem(att, link);
  if (problem) throw failed(problem);

  // IPAM still holds the addresses (or the agent answers, or the delegate agrees).
  await ipam.check({ ...prev, ips: mine });
}
