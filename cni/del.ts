/**
 * DEL: best effort and idempotent. The host veth (named from container ID + ifname, so
 * no state is needed) is deleted, which takes the pod end with it; then IPAM releases.
 * Success when the netns, the interface or the allocation is already gone, and with an
 * empty CNI_NETNS. Errors of the steps are gathered, not short-circuited.
 * @module
 */

import { NetnsNotFoundError } from "../netns/errors.ts";
import { Netns } from "../netns/netns.ts";
import { deleteLink } from "./bridge.ts";
import type { VerbContext } from "./context.ts";
import { CniError } from "./errors.ts";
import { toCniError } from "./fail.ts";
import { ipamFor } from "./ipam.ts";
import { removeMasq } from "./masq.ts";
import { hostVethName } from "./names.ts";

export async function cmdDel(ctx: VerbContext): Promise<void> {
  const { env, conf, log } = ctx;
  const errors: CniError[] = [];
  const hostVeth = hostVethName(env.containerID, env.ifname);
  try {
    if (conf.slave) await deletePodSlave(ctx);
    else {
      const existed = await deleteLink(hostVeth);
      log.debug(existed ? "host veth deleted" : "host veth already gone", { hostVeth });
    }
  } catch (e) {
    errors.push(toCniError(e));
  }
  const ipam = ipamFor(ctx);
  try {
    await ipam.del();
  } catch (e) {
    errors.push(toCniError(e));
  }
  if (conf.ipMasq && errors.length === 0 && ipam.isEmpty && await ipam.isEmpty()) {
    try {
      await removeMasq(conf.name);
    } catch (e) {
      errors.push(toCniError(e));
    }
  }
  if (errors.length) {
    const first = errors[0]!;
    throw new CniError(
      first.code,
      first.message,
      errors.length > 1 ? errors.map((e) => e.message).join("; ") : first.details,
    );
  }
  log.info("detached", conf.slave ? { ifname: env.ifname } : { hostVeth });
}

/**
 * macvlan/ipvlan: the pod's interface lives only in the pod's namespace. Deleted there
 * when CNI_NETNS is given and still exists; never in the plugin's own namespace.
 */
async function deletePodSlave(ctx: VerbContext): Promise<void> {
  const { env, log } = ctx;
  if (env.netns === "") return;
  let ns: Netns;
  try {
    ns = Netns.open(env.netns);
  } catch (e) {
    if (e instanceof NetnsNotFoundError) {
      log.debug("pod namespace already gone", { netns: env.netns });
      return;
    }
    throw e;
  }
  using pod = ns;
  if (pod.isHome()) {
    log.warn("DEL: CNI_NETNS is the plugin's own namespace; no interface deleted", {
      netns: env.netns,
    });
    return;
  }
  const existed = await deleteLink(env.ifname, pod);
  log.debug(existed ? "pod interface deleted" : "pod interface already gone", {
    ifname: env.ifname,
  });
}
