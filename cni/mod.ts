/**
 * cni/: the CNI protocol face of ohno (config, versions, results, errors, verbs) and
 * the pod-side modes: bridge (`bridge.ts`), macvlan and ipvlan (`macvlan.ts`).
 *
 * Entry: {@link runCni} reads the environment and stdin, runs one verb, and returns the
 * one JSON document to print and the exit code; it never prints (main.ts does).
 *
 * Imports: lib/, netns/, ipam/. Never daemon/ (the plugin talks to the node agent only
 * over its socket), never a Kubernetes or etcd client.
 * @module
 */

import type { AgentTransport } from "../ipam/client.ts";
import { readAllSync } from "../lib/bytes.ts";
import { Logger, parseLevel } from "../lib/log.ts";
import type { VerbContext } from "./context.ts";
import { CniCode, CniError } from "./errors.ts";
import type { Result } from "./result.ts";
import { parseVerb, type Verb } from "./verb.ts";
import { answerVersion } from "./version.ts";
import { LATEST_VERSION, SUPPORTED_VERSIONS } from "./versions.ts";

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
  /**
   * Set when the node agent runs the call in-process (`POST /v1/cni`): the IPAM of a
   * config that names the agent's socket goes through this (the agent's own handler),
   * and the call is never forwarded again.
   */
  agent?: AgentTransport;
}

/** The process's real environment and stdin. */
export function processIo(): CniIo {
  return {
    env: Deno.env.toObject(),
    readStdin: () => Promise.resolve(readAllSync(Deno.stdin)),
  };
}

/** Runs one CNI invocation. Never throws: every failure becomes a CNI error document. */
export async function runCni(face: Face, io: CniIo = processIo()): Promise<CniOutcome> {
  const raw = io.env;
  const log = new Logger({
    level: parseLevel(raw.OHNO_LOG_LEVEL),
    file: raw.OHNO_LOG_FILE || DEFAULT_LOG_FILE,
    context: `${raw.CNI_COMMAND ?? "-"} ${(raw.CNI_CONTAINERID ?? "-").slice(0, 12)} ${
      raw.CNI_IFNAME ?? "-"
    }`,
  });
  let version: string = LATEST_VERSION;
  try {
    const verb = parseVerb(raw);
    const stdin = await io.readStdin();
    if (verb === "VERSION") return answerVersion(stdin);
    // Answer errors in the config's version when it names a supported one.
    const peeked = peek(stdin);
    version = peekVersion(peeked) ?? version;
    // A config that names the node agent's socket goes to the agent whole (cni/forward.ts)
    // before this process loads or checks it: the agent checks it with this same code and
    // answers errors as this process would. This process goes on below only when the
    // agent says the plugin must do the call, or cannot be reached (then the config is
    // checked first, so a bad one is still reported as such, not as error 11).
    let unreachable: unknown;
    const socket = face === "ohno" && !io.agent && raw.OHNO_POD_WORK !== "plugin" &&
        (verb === "ADD" || verb === "DEL" || verb === "CHECK")
      ? peekAgent(peeked, log, raw)
      : undefined;
    if (socket) {
      const r = await (await import("./forward.ts")).forward(raw, stdin, socket, log);
      if (r.answered) return r.answered;
      unreachable = r.unreachable;
    }
    // The plugin does the call: now the config, the environment and the rest are loaded.
    const [{ loadNetConf }, { parseEnv }] = await Promise.all([
      import("./config.ts"),
      import("./env.ts"),
    ]);
    const env = parseEnv(raw);
    const conf = loadNetConf(stdin, { forIpamFace: face === "ohno-ipam" });
    log.configure({
      ...(raw.OHNO_LOG_FILE ? {} : conf.logFile ? { file: conf.logFile } : {}),
      ...(conf.logLevel && !raw.OHNO_LOG_LEVEL ? { level: conf.logLevel } : {}),
    });
    const ctx: VerbContext = { env, conf, stdin, log, ...(io.agent ? { agent: io.agent } : {}) };
    log.debug("start", { network: conf.name, netns: env.netns || "-", version });
    if (env.unusableContainerID) {
      // No ADD takes such an ID, so there is nothing to delete (docs/cni.md, DEL).
      log.warn("DEL: nothing can have been added under this container ID", {
        why: env.unusableContainerID,
      });
      return { exitCode: 0 };
    }
    if (unreachable) throw unreachable;
    const result = face === "ohno-ipam" ? await runIpamFace(verb, ctx) : await runMain(verb, ctx);
    if (result === undefined) return { exitCode: 0 };
    const { formatResult } = await import("./result.ts");
    return { stdout: formatResult(result, conf.cniVersion), exitCode: 0 };
  } catch (e) {
    const { toCniError } = await import("./fail.ts");
    const err = toCniError(e);
    log.error(err.message, { code: err.code, details: err.details });
    return { stdout: err.toJSON(version), exitCode: 1 };
  }
}

async function runMain(verb: Verb, ctx: VerbContext): Promise<Result | undefined> {
  if (verb === "VERSION") {
    throw new CniError(CniCode.InvalidEnvironment, `CNI_COMMAND ${verb} is not handled`);
  }
  // The mode driver holds the host's netlink socket: closed when the verb is done.
  using fx = await (await import("./modes.ts")).withEffects(ctx);
  switch (verb) {
    case "ADD":
      return await (await import("./add.ts")).cmdAdd(fx);
    case "DEL":
      return void await (await import("./del.ts")).cmdDel(fx);
    case "CHECK":
      return void await (await import("./check.ts")).cmdCheck(fx);
    case "GC":
      return void await (await import("./gc.ts")).cmdGc(fx, { hostSide: true });
    case "STATUS":
      return void await (await import("./gc.ts")).cmdStatus(fx);
  }
}

async function runIpamFace(verb: Verb, ctx: VerbContext): Promise<Result | undefined> {
  const f = await import("./ipamface.ts");
  switch (verb) {
    case "ADD":
      return await f.ipamAdd(ctx);
    case "DEL":
      return void await f.ipamDel(ctx);
    case "CHECK":
      return void await f.ipamCheck(ctx);
    case "GC":
      return void await f.ipamGc(ctx);
    case "STATUS":
      return void await f.ipamStatus(ctx);
    default:
      throw new CniError(CniCode.InvalidEnvironment, `CNI_COMMAND ${verb} is not handled`);
  }
}

/** The fields of the config read before it is checked (all may be anything, or missing). */
interface Peeked {
  cniVersion?: unknown;
  ipam?: { type?: unknown; daemonSocket?: unknown; ranges?: unknown };
  logFile?: unknown;
  logLevel?: unknown;
}

/** The config as JSON, unchecked; undefined when it is not JSON (the check says why). */
function peek(stdin: string): Peeked | undefined {
  try {
    return JSON.parse(stdin) ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * The node agent's socket when the config names one (`ipam.type` ohno with `daemonSocket`,
 * no `ranges`); its `logFile` and `logLevel` are applied to `log` as the full check would.
 */
function peekAgent(
  doc: Peeked | undefined,
  log: Logger,
  raw: Record<string, string>,
): string | undefined {
  const ipam = doc?.ipam;
  const socket = ipam?.daemonSocket;
  if (!doc || ipam?.type !== "ohno" || ipam.ranges !== undefined) return undefined;
  if (typeof socket !== "string" || !socket.startsWith("/")) return undefined;
  const level = typeof doc.logLevel === "string" ? parseLevel(doc.logLevel) : undefined;
  log.configure({
    ...(raw.OHNO_LOG_FILE || typeof doc.logFile !== "string" ? {} : { file: doc.logFile }),
    ...(level && !raw.OHNO_LOG_LEVEL ? { level } : {}),
  });
  return socket;
}

/** The config's cniVersion when it is a supported one (errors are answered in it). */
function peekVersion(doc: Peeked | undefined): string | undefined {
  const v = doc?.cniVersion;
  return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v)
    ? v
    : undefined;
}
