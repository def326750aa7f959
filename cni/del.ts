/**
 * DEL: best effort and idempotent. The mode driver removes the attachment's links (bridge:
 * the host veth, named from container ID + ifname, so no state is needed; macvlan: the
 * pod's interface in its namespace) while IPAM releases. Success when the netns, the
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
  // Both at once: the kernel deletes the veth (tens of ms, off the JavaScript thread)
  // while IPAM releases. The address can be free a moment before its veth is gone, as
  // with the reference bridge plugin, which releases first.
  // (Each started in its own async function: one that throws before it returns a promise
  // still lets the other run.)
  const [links, released] = await Promise.allSettled([
    (async () =>
      await driver.detach({
        containerID: env.containerID,
        ifname: env.ifname,
        netns: env.netns,
      }))(),
    (async () => await ipam.del())(),
  ]);
  const detached = links.status === "fulfilled" ? links.value : {};
  for (const r of [links, released]) {
    if (r.status === "rejected") errors.push(toCniError(r.reason));
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
