/**
 * The mode driver for a config: macvlan/ipvlan when `mode` names one, else bridge.
 * Loaded only by the main face's verbs (the IPAM face touches no link).
 * @module
 */

import type { Logger } from "../lib/log.ts";
import type { NetConf } from "./config.ts";
import type { PodVerbContext, VerbContext } from "./context.ts";
import type { ModeDriver } from "./driver.ts";
import { ipamFor } from "./ipam.ts";

/** Loads only the config's mode: a bridge ADD never loads the macvlan driver, and back. */
export async function driverFor(conf: NetConf, log: Logger): Promise<ModeDriver> {
  if (conf.slave) return new (await import("./macvlan.ts")).SlaveDriver(conf, conf.slave, log);
  return new (await import("./bridge.ts")).BridgeDriver(conf, log);
}

/**
 * The context of a main-face verb (ADD, DEL, CHECK, GC, STATUS): the real driver and IPAM;
 * disposing of it closes the driver's sockets.
 */
export async function withEffects(ctx: VerbContext): Promise<PodVerbContext & Disposable> {
  const driver = await driverFor(ctx.conf, ctx.log);
  return { ...ctx, driver, ipam: ipamFor(ctx), [Symbol.dispose]: () => driver[Symbol.dispose]() };
}
