/**
 * The `ohno-ipam` face: ohno as an IPAM plugin for other main plugins
 * (`"ipam": {"type": "ohno-ipam", "ranges": …}` or `… "daemonSocket": …`). Its result has
 * no interfaces and no `ips[].interface`, as the spec says of IPAM results.
 * @module
 */

import type { VerbContext } from "./context.ts";
import { CniCode, CniError } from "./errors.ts";
import { ipamFor } from "./ipam.ts";
import type { Result } from "./result.ts";
import { versionAtLeast } from "./versions.ts";

function driver(ctx: VerbContext) {
  if (ctx.conf.ipam.mode === "delegate") {
    throw new CniError(
      CniCode.InvalidConfig,
      `invalid network config: ipam.type ${
        JSON.stringify(ctx.conf.ipam.type)
      }: ohno-ipam serves only "ohno-ipam" (or "ohno") with ranges or daemonSocket`,
    );
  }
  return ipamFor(ctx);
}

export async function ipamAdd(ctx: VerbContext): Promise<Result> {
  const got = await driver(ctx).add();
  return {
    ips: got.ips.map((i) => ({ address: i.address, ...(i.gateway ? { gateway: i.gateway } : {}) })),
    routes: got.routes,
    ...(ctx.conf.dns ?? got.dns ? { dns: ctx.conf.dns ?? got.dns! } : {}),
  };
}

export async function ipamDel(ctx: VerbContext): Promise<void> {
  await driver(ctx).del();
}

export async function ipamCheck(ctx: VerbContext): Promise<void> {
  if (!versionAtLeast(ctx.conf.cniVersion, "0.4.0")) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `CHECK needs cniVersion 0.4.0 or later, the config says ${ctx.conf.cniVersion}`,
    );
  }
  await driver(ctx).check(ctx.conf.prevResult ?? {});
}

export async function ipamGc(ctx: VerbContext): Promise<void> {
  if (!versionAtLeast(ctx.conf.cniVersion, "1.1.0")) {
    throw new CniError(CniCode.IncompatibleVersion, `GC needs cniVersion 1.1.0`);
  }
  await driver(ctx).gc(ctx.conf.validAttachments ?? []);
}

export async function ipamStatus(ctx: VerbContext): Promise<void> {
  if (!versionAtLeast(ctx.conf.cniVersion, "1.1.0")) {
    throw new CniError(CniCode.IncompatibleVersion, `STATUS needs cniVersion 1.1.0`);
  }
  await driver(ctx).status();
}
