/** What every verb is handed: the parsed environment and config, stdin, the logger. */

import type { Logger } from "../lib/log.ts";
import type { NetConf } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { CniCode, CniError } from "./errors.ts";

export interface VerbContext {
  env: CniEnv;
  conf: NetConf;
  /** The config exactly as received (forwarded to delegated plugins). */
  stdin: string;
  log: Logger;
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
