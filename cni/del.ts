/**
 * DEL: best effort and idempotent. The mode driver removes the attachment's links (bridge:
 * the host veth, named from container ID + ifname, so no state is needed; macvlan: the
 * pod's interface in its namespace), then IPAM releases. Success when the netns, the
 * interface or the allocation is already gone, and with an empty CNI_NETNS. Errors of
 * the steps are gathered, not short-circuited.
 * @module
 */

import type { PodVerbContext } from "./context.ts";
import { CniError } from "./errors.ts";
import { toCniError } from "./fail.ts";

export async function cmdDel(ctx: PodVerbContext): Promise<void> {
  const { env, conf, log, driver, ipam } = ctx;
  const errors: CniError[] = [];
  let detached: Record<string, string> = {};
  try {
    detached = await driver.detach({
      containerID: env.containerID,
      ifname: env.ifname,
      netns: env.netns,
    });
  } catch (e) {
    errors.push(toCniError(e));
  }
  try {
    await ipam.del();
  } catch (e) {
    errors.push(toCniError(e));
  }
  if (conf.ipMasq && errors.length === 0 && ipam.isEmpty && await ipam.isEmpty()) {
    try {
      await driver.dropNetwork();
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
  log.info("detached", detached);
}
