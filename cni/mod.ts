/**
 * cni/: the CNI protocol face of ohno (config, versions, results, errors, verbs) and
 * the pod-side modes (bridge first).
 *
 * Entry: {@link runCni} reads the environment and stdin, runs one verb, and returns the
 * one JSON document to print and the exit code; it never prints (main.ts does).
 *
 * Imports: lib/, netns/, ipam/. Never daemon/ (the plugin talks to the node agent only
 * over its socket), never a Kubernetes or etcd client.
 * @module
 */

import { Logger, parseLevel } from "../lib/log.ts";
import { CniCode, CniError } from "./errors.ts";
import { LATEST_VERSION, SUPPORTED_VERSIONS } from "./versions.ts";

export { CniCode, CniError } from "./errors.ts";
export { SUPPORTED_VERSIONS } from "./versions.ts";

/** Where CNI mode logs unless `logFile` or `OHNO_LOG_FILE` says otherwise. */
export const DEFAULT_LOG_FILE = "/var/run/log/ohno.log";

/** Which face the binary was invoked as. */
export type Face = "ohno" | "ohno-ipam";

/** What main.ts prints and exits with. */
export interface CniOutcome {
  /** The one JSON document for stdout; absent when the verb prints nothing. */
  stdout?: unknown;
  exitCode: number;
}

export interface CniIo {
  env: Record<string, string>;
  /** Reads all of stdin. */
  readStdin(): Promise<string>;
}

/** The process's real environment and stdin. */
export function processIo(): CniIo {
  return {
    env: Deno.env.toObject(),
    readStdin: () => new Response(Deno.stdin.readable).text(),
  };
}

/** Runs one CNI invocation. Never throws: every failure becomes a CNI error document. */
export async function runCni(face: Face, io: CniIo = processIo()): Promise<CniOutcome> {
  const env = io.env;
  const command = env.CNI_COMMAND ?? "";
  const log = new Logger({
    level: parseLevel(env.OHNO_LOG_LEVEL),
    file: env.OHNO_LOG_FILE || DEFAULT_LOG_FILE,
    context: `${command} ${(env.CNI_CONTAINERID ?? "-").slice(0, 12)} ${env.CNI_IFNAME ?? "-"}`,
  });
  let version: string = LATEST_VERSION;
  try {
    const stdin = await io.readStdin();
    if (command === "VERSION") {
      const v = parseVersionRequest(stdin);
      version = v;
      return { stdout: { cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] }, exitCode: 0 };
    }
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_COMMAND ${JSON.stringify(command)} is not supported by ${face} yet`,
    );
  } catch (e) {
    const err = e instanceof CniError
      ? e
      : new CniError(CniCode.Internal, "internal error", (e as Error)?.stack ?? String(e));
    log.error(err.message, { code: err.code, details: err.details });
    return { stdout: err.toJSON(version), exitCode: 1 };
  }
}

/** VERSION's stdin: `{"cniVersion": "…"}`; empty stdin means the newest version. */
function parseVersionRequest(stdin: string): string {
  if (stdin.trim() === "") return LATEST_VERSION;
  let doc: unknown;
  try {
    doc = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(
      CniCode.DecodeFailure,
      "cannot parse the VERSION request as JSON",
      String(e),
    );
  }
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
