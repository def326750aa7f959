/**
 * GC and STATUS (1.1.0+).
 *
 * GC releases every allocation of the network that is not in
 * `cni.dev/valid-attachments` (or the older `cni.dev/attachments`; a missing key means
 * no attachment is valid), forwards GC to a delegated IPAM plugin, and has the mode driver
 * remove what it left on the node for the others (bridge: ohno's host veths on the
 * network's bridge that belong to no valid attachment).
 *
 * STATUS succeeds when ADD can be served; otherwise error 50.
 * @module
 */

import type { PodVerbContext, VerbContext } from "./context.ts";
import { CniCode, CniError } from "./errors.ts";
import { toCniError } from "./fail.ts";
import { versionAtLeast } from "./versions.ts";

function needs11(ctx: VerbContext, verb: string): void {
  if (!versionAtLeast(ctx.conf.cniVersion, "1.1.0")) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `${verb} needs cniVersion 1.1.0, the config says ${ctx.conf.cniVersion}`,
    );
  }
}

export async function cmdGc(ctx: PodVerbContext, opts: { hostSide: boolean }): Promise<void> {
  needs11(ctx, "GC");
  const valid = ctx.conf.validAttachments ?? [];
  if (!ctx.conf.validAttachments) {
    ctx.log.warn("GC without cni.dev/valid-attachments: treating every attachment as invalid");
  }
  const errors: string[] = [];
  try {
    await ctx.ipam.gc(valid);
  } catch (e) {
    errors.push(toCniError(e).message);
  }
  if (opts.hostSide) {
    for (const e of await ctx.driver.collect(valid)) errors.push(toCniError(e).message);
  }
  if (errors.length) {
    throw new CniError(CniCode.IoFailure, "GC finished with errors", errors.join("; "));
  }
}

export async function cmdStatus(ctx: PodVerbContext): Promise<void> {
  needs11(ctx, "STATUS");
  try {
    await ctx.driver.status();
  } catch (e) {
    throw new CniError(CniCode.NotAvailable, `ADD would fail: ${toCniError(e).message}`);
  }
  await ctx.ipam.status();
}
