/**
 * The CNI environment: which variables each verb needs, and `CNI_ARGS`.
 * Anything missing or malformed is error 4 naming the variable, before anything is
 * touched.
 * @module
 */

import { isIp } from "../ipam/addr.ts";
import { MAX_CONTAINER_ID_LENGTH } from "../ipam/records.ts";
import { batchWordProblem } from "../netns/ip.ts";
import { Netns } from "../netns/netns.ts";
import { CniCode, CniError } from "./errors.ts";

import { parseVerb, type Verb } from "./verb.ts";
export { parseVerb, type Verb };

/** `CNI_ARGS` keys ohno understands. */
export interface CniArgs {
  /** `IP=` (comma-separated, one per family): static addresses. */
  ips: string[];
  /** `MAC=`: the pod interface's hardware address. */
  mac?: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  infraContainerId?: string;
}

export interface CniEnv {
  command: Verb;
  containerID: string;
  /** Empty when the runtime sent none (DEL after the task exited). */
  netns: string;
  ifname: string;
  args: CniArgs;
  /**
   * DEL only: why CNI_CONTAINERID breaks the rules ADD enforces. Nothing can have been
   * added under such an ID, so DEL has nothing to do and succeeds (the reason is logged).
   */
  unusableContainerID?: string;
  /** CNI_PATH split on ':' (empty entries dropped). */
  path: string[];
  /** The raw environment, for forwarding to delegated plugins. */
  raw: Record<string, string>;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;

function bad(variable: string, why: string): CniError {
  return new CniError(CniCode.InvalidEnvironment, `${variable} ${why}`);
}

/** A value quoted for a message, cut to its first 64 characters (IDs may be huge). */
export function quoteShort(value: string): string {
  return value.length > 64
    ? `${JSON.stringify(value.slice(0, 64)).slice(0, -1)}…"`
    : JSON.stringify(value);
}

/**
 * Why `name` cannot be an interface ohno creates, or undefined when it can: the kernel's
 * rules (1–15 characters, no '/', ':' or blanks, not `.`, `..`, nor `all` or `default`, which
 * the kernel keeps for `/proc/sys/net/…/conf/`), and what ip's batch reader can carry
 * (no '#', not both kinds of quote).
 */
export function ifnameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (name.length > 15) {
    return `${quoteShort(name)} is too long (${name.length} > 15 characters)`;
  }
  if (name === "." || name === ".." || /[\s/:]/.test(name)) {
    return `${JSON.stringify(name)} is not a valid interface name (no '/', ':' or blanks)`;
  }
  if (name === "all" || name === "default") {
    return `${JSON.stringify(name)} is reserved by the kernel`;
  }
  const batch = batchWordProblem(name);
  if (batch) return `${JSON.stringify(name)} ${batch}, which ohno cannot pass to ip`;
  return undefined;
}

/** Checks an interface name ({@link ifnameProblem}); error 4 naming the variable. */
function checkIfname(name: string, variable = "CNI_IFNAME"): void {
  const problem = ifnameProblem(name);
  if (problem) throw bad(variable, problem);
}

/** Why a container ID breaks the rules, or undefined when it keeps them. */
function containerIdProblem(id: string): string | undefined {
  if (id.length > MAX_CONTAINER_ID_LENGTH) {
    return `${
      quoteShort(id)
    } is too long (${id.length} characters, at most ${MAX_CONTAINER_ID_LENGTH})`;
  }
  if (!ID_RE.test(id)) {
    return `${quoteShort(id)} is not valid (letters, digits, '_', '.', '-'; first alphanumeric)`;
  }
  return undefined;
}

/**
 * Opens the pod's namespace (CNI_NETNS). Error 4 when it does not exist or is the
 * plugin's own namespace: the host must never be wired as if it were a pod.
 */
export function openPodNetns(env: { netns: string }): Netns {
  const ns = Netns.open(env.netns);
  try {
    if (ns.isHome()) {
      throw bad(
        "CNI_NETNS",
        `${
          JSON.stringify(env.netns)
        } is the plugin's own network namespace (the host's), not a pod's`,
      );
    }
  } catch (e) {
    ns.close();
    throw e;
  }
  return ns;
}

/** Reads and checks the variables `command` needs. */
export function parseEnv(raw: Record<string, string>): CniEnv {
  const command = parseVerb(raw);
  const needsContainer = command === "ADD" || command === "DEL" || command === "CHECK";
  const containerID = raw.CNI_CONTAINERID ?? "";
  const ifname = raw.CNI_IFNAME ?? "";
  const netns = raw.CNI_NETNS ?? "";
  let unusable: string | undefined;
  if (needsContainer) {
    if (containerID === "") throw bad("CNI_CONTAINERID", "is not set");
    const idProblem = containerIdProblem(containerID);
    if (idProblem) {
      // ADD has always refused such an ID, so DEL has nothing to undo: failing it would
      // only make the runtime retry for ever.
      if (command !== "DEL") throw bad("CNI_CONTAINERID", idProblem);
      unusable = `CNI_CONTAINERID ${idProblem}`;
    }
    if (ifname === "") throw bad("CNI_IFNAME", "is not set");
    checkIfname(ifname);
    if (command !== "DEL") {
      if (netns === "") throw bad("CNI_NETNS", "is not set");
      if (!netns.startsWith("/")) {
        throw bad("CNI_NETNS", `${JSON.stringify(netns)} is not an absolute path`);
      }
      const batch = batchWordProblem(netns);
      if (batch) {
        throw bad("CNI_NETNS", `${JSON.stringify(netns)} ${batch}, which ohno cannot pass to ip`);
      }
    }
  }
  return {
    command,
    containerID,
    netns,
    ifname,
    ...(unusable ? { unusableContainerID: unusable } : {}),
    args: parseCniArgs(raw.CNI_ARGS ?? ""),
    path: (raw.CNI_PATH ?? "").split(":").filter((p) => p !== ""),
    raw,
  };
}

const KNOWN_ARGS = new Set([
  "IgnoreUnknown",
  "IP",
  "MAC",
  "K8S_POD_NAMESPACE",
  "K8S_POD_NAME",
  "K8S_POD_UID",
  "K8S_POD_INFRA_CONTAINER_ID",
]);

/**
 * Parses `K=V;K=V`. Unknown keys are an error unless `IgnoreUnknown` is true (`1`,
 * `true`), as in the reference plugins.
 */
export function parseCniArgs(text: string): CniArgs {
  const out: CniArgs = { ips: [] };
  if (text.trim() === "") return out;
  const pairs: [string, string][] = [];
  for (const part of text.split(";")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) {
      throw bad("CNI_ARGS", `has a malformed pair ${JSON.stringify(part)} (want KEY=VALUE)`);
    }
    pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  const ignore = pairs.some(([k, v]) =>
    k === "IgnoreUnknown" && ["1", "true", "True", "TRUE"].includes(v)
  );
  for (const [k, v] of pairs) {
    switch (k) {
      case "IP":
        for (const ip of v.split(",").map((s) => s.trim()).filter(Boolean)) {
          if (!isIp(ip.replace(/\/\d+$/, ""))) {
            throw bad("CNI_ARGS", `has IP=${JSON.stringify(ip)}, which is not an IP address`);
          }
          out.ips.push(ip.replace(/\/\d+$/, ""));
        }
        break;
      case "MAC":
        if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v) || (parseInt(v.slice(0, 2), 16) & 1)) {
          throw bad("CNI_ARGS", `has MAC=${JSON.stringify(v)}, which is not a unicast MAC address`);
        }
        out.mac = v.toLowerCase();
        break;
      case "K8S_POD_NAMESPACE":
        out.podNamespace = v;
        break;
      case "K8S_POD_NAME":
        out.podName = v;
        break;
      case "K8S_POD_UID":
        out.podUid = v;
        break;
      case "K8S_POD_INFRA_CONTAINER_ID":
        out.infraContainerId = v;
        break;
      default:
        if (!KNOWN_ARGS.has(k) && !ignore) {
          throw bad(
            "CNI_ARGS",
            `has unknown key ${JSON.stringify(k)} (set IgnoreUnknown=1 to allow)`,
          );
        }
    }
  }
  return out;
}
