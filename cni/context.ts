/**
 * What every verb is handed: the parsed environment and config, stdin, the logger; the
 * main face's ADD, DEL and CHECK also get their effects: the mode's kernel driver and
 * the IPAM (`withEffects` in modes.ts makes the real ones; unit tests hand in fakes).
 */

import type { Logger } from "../lib/log.ts";
import type { NetConf } from "./config.ts";
import type { ModeDriver } from "./driver.ts";
import type { CniEnv } from "./env.ts";
import { CniCode, CniError } from "./errors.ts";
import type { IpamDriver } from "./ipam.ts";

export interface VerbContext {
  env: CniEnv;
  conf: NetConf;
  /** The config exactly as received (forwarded to delegated plugins). */
  stdin: string;
  log: Logger;
}

/** ADD, DEL and CHECK of the main face: the verb and the effects it orchestrates. */
export interface PodVerbContext extends VerbContext {
  /** The mode's kernel work (bridge, macvlan/ipvlan). */
  driver: ModeDriver;
  /** The config's IPAM. */
  ipam: IpamDriver;
}

/**
 * Test-only fault injection: when `OHNO_TEST_FAULT` names this point, the verb fails
 * here (error 999), so tests can prove that rollback leaves nothing behind. Points:
 * `after-ipam`, `after-host`, `after-pod` (docs/cni.md).
 */
export function faultPoint(ctx: VerbContext, point: string): void {
  if (ctx.env.raw.OHNO_TEST_FAULT === point) {
    throw new CniError(CniCode.Internal, `injected fault at ${point} (OHNO_TEST_FAULT)`);
  }
}
