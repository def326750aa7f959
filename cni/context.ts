/**
 * What every verb is handed: the parsed environment and config, stdin, the logger; the
 * main face's ADD, DEL and CHECK also get their effects: the mode's kernel driver and
 * the IPAM (`withEffects` in modes.ts makes the real ones; unit tests hand in fakes).
 */

import type { AgentTransport } from "../ipam/client.ts";
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
  /** In the node agent: how the agent IPAM is reached (its own handler, no socket). */
  agent?: AgentTransport;
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
 * `after-ipam`, `after-host`, `after-pod` (docs/cni.md); `pause-<point>` waits there.
 */
export async function faultPoint(ctx: VerbContext, point: string): Promise<void> {
  const fault = ctx.env.raw.OHNO_TEST_FAULT;
  if (fault === point) {
    throw new CniError(CniCode.Internal, `injected fault at ${point} (OHNO_TEST_FAULT)`);
  }
  // `pause-<point>`: the call stops here for a minute, so a test can kill the process doing
  // it (the plugin, or the agent doing the call for it) in the middle of the call.
  if (fault === `pause-${point}`) {
    ctx.log.warn(`paused at ${point} (OHNO_TEST_FAULT)`);
    await new Promise((r) => setTimeout(r, 60_000));
  }
}
