/**
 * CHECK (0.4.0+): is the attachment still as ADD left it? The pod interface with the
 * addresses of prevResult, the pod's default routes, the host veth on the bridge, and
 * IPAM still holding the addresses. Prints nothing on success.
 * @module
 */

import { type IpAddr, ipJson, type IpLink, type IpRoute } from "../netns/ip.ts";
import { IpNotFoundError } from "../netns/errors.ts";
import type { VerbContext } from "./context.ts";
import { openPodNetns } from "./env.ts";
import { CniCode, CniError } from "./errors.ts";
import { ipamFor } from "./ipam.ts";
import { resolveMaster } from "./macvlan.ts";
import { hostVethName } from "./names.ts";
import { versionAtLeast } from "./versions.ts";

function failed(msg: string): CniError {
  return new CniError(CniCode.CheckFailed, `CHECK: ${msg}`);
}

export async function cmdCheck(ctx: VerbContext): Promise<void> {
  const { env, conf } = ctx;
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
  using pod = openPodNetns(env);

  // Pod side: the interface and its addresses.
  let podAddr: IpAddr | undefined;
  try {
    podAddr = (await ipJson<IpAddr[]>(["addr", "show", "dev", env.ifname], { netns: pod }))[0];
  } catch (e) {
    if (!(e instanceof IpNotFoundError)) throw e;
  }
  if (!podAddr) throw failed(`interface ${env.ifname} is missing from ${env.netns}`);
  const have = new Set(podAddr.addr_info.map((a) => `${a.local}/${a.prefixlen}`));
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
  if (podMac && podAddr.address && podMac.toLowerCase() !== podAddr.address.toLowerCase()) {
    throw failed(`${env.ifname} has MAC ${podAddr.address}, prevResult says ${podMac}`);
  }

  // Pod side: default routes through the gateways ADD configured.
  if (conf.isDefaultGateway) {
    for (const fam of [4, 6] as const) {
      const ip = mine.find((i) => (i.address.includes(":") ? 6 : 4) === fam && i.gateway);
      if (!ip) continue;
      const routes = await ipJson<IpRoute[]>([`-${fam}`, "route", "show", "default"], {
        netns: pod,
      });
      if (!routes.some((r) => r.gateway === ip.gateway && r.dev === env.ifname)) {
        throw failed(`default route via ${ip.gateway} dev ${env.ifname} is missing`);
      }
    }
  }

  if (conf.slave) {
    // The pod's interface is a slave of the master, of the configured kind and mode.
    const slave = conf.slave;
    resolveMaster(slave, conf.mtu); // the master is still there and fit
    const link = (await ipJson<IpLink[]>(["-d", "link", "show", "dev", env.ifname], {
      netns: pod,
    }))[0];
    const kind = link?.linkinfo?.info_kind;
    if (kind !== slave.kind) {
      throw failed(`${env.ifname} is a ${kind ?? "plain"} link, not a ${slave.kind} slave`);
    }
    const mode = (link?.linkinfo?.info_data as { mode?: string } | undefined)?.mode;
    if (mode !== undefined && mode !== slave.linkMode) {
      throw failed(`${env.ifname} is in ${slave.kind} mode ${mode}, not ${slave.linkMode}`);
    }
    await ipamFor(ctx).check({ ...prev, ips: mine });
    return;
  }

  // Host side: the veth on the bridge.
  const hostVeth = hostVethName(env.containerID, env.ifname);
  let link: IpLink | undefined;
  try {
    link = (await ipJson<IpLink[]>(["link", "show", "dev", hostVeth]))[0];
  } catch (e) {
    if (!(e instanceof IpNotFoundError)) throw e;
  }
  if (!link) throw failed(`host veth ${hostVeth} is missing`);
  if (link.master !== conf.bridge) {
    throw failed(`host veth ${hostVeth} is not on bridge ${conf.bridge}`);
  }

  // IPAM still holds the addresses (or the agent answers, or the delegate agrees).
  await ipamFor(ctx).check({ ...prev, ips: mine });
}
