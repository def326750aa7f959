/**
 * The mode driver for a config: macvlan/ipvlan when `mode` names one, else bridge.
 * Loaded only by the main face's verbs (the IPAM face touches no link).
 * @module
 */

import type { Logger } from "../lib/log.ts";
import { BridgeDriver } from "./bridge.ts";
import type { NetConf } from "./config.ts";
import type { PodVerbContext, VerbContext } from "./context.ts";
import type { ModeDriver } from "./driver.ts";
import { ipamFor } from "./ipam.ts";
import { SlaveDriver } from "./macvlan.ts";

export function driverFor(conf: NetConf, log: Logger): ModeDriver {
  return conf.slave ? new SlaveDriver(conf, conf.slave, log) : new BridgeDriver(conf, log);
}

/**
 * The context of a main-face verb (ADD, DEL, CHECK, GC, STATUS): the real driver and IPAM;
 * disposing of it closes the driver's sockets.
 */
export function withEffects(ctx: VerbContext): PodVerbContext & Disposable {
  const driver = driverFor(ctx.conf, ctx.log);
  return { ...ctx, driver, ipam: ipamFor(ctx), [Symbol.dispose]: () => driver[Symbol.dispose]() };
}
