/**
 * GC and STATUS (1.1.0+).
 *
 * GC releases every allocation of the network that is not in
 * `cni.dev/valid-attachments` (or the older `cni.dev/attachments`; a missing key means
 * no attachment is valid), forwards GC to a delegated IPAM plugin, and deletes ohno's
 * host veths on the network's bridge that belong to no valid attachment.
 *
 * STATUS succeeds when ADD can be served; otherwise error 50.
 * @module
 */

import { ipJson, type IpLink } from "../netns/ip.ts";
import { IpNotFoundError } from "../netns/errors.ts";
import { deleteLink } from "./iplinks.ts";
import type { VerbContext } from "./context.ts";
import { CniCode, CniError } from "./errors.ts";
import { toCniError } from "./fail.ts";
import { ipamFor } from "./ipam.ts";
import { resolveMaster } from "./macvlan.ts";
import { hostVethName } from "./names.ts";
import { versionAtLeast } from "./versions.ts";

function needs11(ctx: VerbContext, verb: string): void {
  if (!versionAtLeast(ctx.conf.cniVersion, "1.1.0")) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `${verb} needs cniVersion 1.1.0, the config says ${ctx.conf.cniVersion}`,
    );
  }
}

const OUR_VETH = /^veth[0-9a-f]{11}$/;

export async function cmdGc(ctx: VerbContext, opts: { hostSide: boolean }): Promise<void> {
  needs11(ctx, "GC");
  const valid = ctx.conf.validAttachments ?? [];
  if (!ctx.conf.validAttachments) {
    ctx.log.warn("GC without cni.dev/valid-attachments: treating every attachment as invalid");
  }
  const errors: string[] = [];
  try {
    await ipamFor(ctx).gc(valid);
  } catch (e) {
    errors.push(toCniError(e).message);
  }
  // macvlan/ipvlan: pod interfaces live only in pod namespaces; nothing on the host to collect
  if (opts.hostSide && !ctx.conf.slave) {
    const keep = new Set(valid.map((a) => hostVethName(a.containerID, a.ifname)));
    let ports: IpLink[] = [];
    try {
      ports = await ipJson<IpLink[]>(["link", "show", "master", ctx.conf.bridge]);
    } catch (e) {
      if (!(e instanceof IpNotFoundError)) errors.push(toCniError(e).message);
    }
    for (const p of ports) {
      if (!OUR_VETH.test(p.ifname) || keep.has(p.ifname)) continue;
      try {
        await deleteLink(p.ifname);
        ctx.log.info("GC: deleted stale host veth", { hostVeth: p.ifname });
      } catch (e) {
        errors.push(toCniError(e).message);
      }
    }
  }
  if (errors.length) {
    throw new CniError(CniCode.IoFailure, "GC finished with errors", errors.join("; "));
  }
}

export async function cmdStatus(ctx: VerbContext): Promise<void> {
  needs11(ctx, "STATUS");
  const slave = ctx.conf.slave;
  if (slave) {
    try {
      resolveMaster(slave, ctx.conf.mtu);
    } catch (e) {
      throw new CniError(CniCode.NotAvailable, `ADD would fail: ${toCniError(e).message}`);
    }
  }
  await ipamFor(ctx).status();
}
