/**
 * The VERSION verb, on its own: main.ts answers it with this module alone (no config,
 * no logger, no IPAM or netlink code), so a runtime's VERSION probe costs little more
 * than Deno's own start. runCni (mod.ts) answers it the same way.
 * @module
 */

import { CniCode, CniError, decodeJson } from "./errors.ts";
import { LATEST_VERSION, SUPPORTED_VERSIONS } from "./versions.ts";

/** What to print and the exit code, for VERSION with `stdin`. */
export function answerVersion(stdin: string): { stdout: unknown; exitCode: number } {
  try {
    const v = parseVersionRequest(stdin);
    return { stdout: { cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] }, exitCode: 0 };
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(CniCode.Internal, String(e));
    return { stdout: err.toJSON(LATEST_VERSION), exitCode: 1 };
  }
}

/** VERSION's stdin: `{"cniVersion": "…"}`; empty stdin means the newest version. */
function parseVersionRequest(stdin: string): string {
  if (stdin.trim() === "") return LATEST_VERSION;
  const doc = decodeJson(stdin, "cannot parse the VERSION request as JSON");
  const v = (doc as { cniVersion?: unknown } | null)?.cniVersion;
  if (v === undefined || v === "") return LATEST_VERSION;
  if (typeof v !== "string") {
    throw new CniError(
      CniCode.DecodeFailure,
      `cniVersion must be a string, got ${JSON.stringify(v)}`,
    );
  }
  // VERSION echoes any version it is asked about: the runtime decides from the list.
  return v;
}
