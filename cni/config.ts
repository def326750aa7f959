/**
 * The network configuration: `loadNetConf` parses stdin into a validated, defaulted,
 * typed config, or throws a CniError naming the field and the value (code 1, 2, 6 or 7)
 * before anything is touched. Every key is documented in docs/cni.md.
 * @module
 */

import { isCidr, isIp, normalizeIp } from "../ipam/addr.ts";
import { IpamConfigError } from "../ipam/errors.ts";
import { DEFAULT_DATA_DIR } from "../ipam/local.ts";
import { parseRangeSets, type RangeSet } from "../ipam/ranges.ts";
import { type Level, parseLevel } from "../lib/log.ts";
import { ifnameProblem } from "./env.ts";
import { CniCode, CniError, decodeJson } from "./errors.ts";
import { type Dns, parseResult, type Result, type Route } from "./result.ts";
import { type CniVersion, isSupportedVersion, SUPPORTED_VERSIONS } from "./versions.ts";

const DEFAULT_BRIDGE = "ohno0";

/** The kernel turns IPv6 off on a link with a smaller MTU (RFC 8200). */
export const IPV6_MIN_MTU = 1280;

export type IpamConf =
  /** Embedded: host-local shaped ranges in the local file store. */
  | {
    mode: "embedded";
    type: string;
    sets: RangeSet[];
    routes: Route[];
    dataDir: string;
  }
  /** Ask the node agent over its unix socket. */
  | { mode: "agent"; type: string; socket: string; routes: Route[] }
  /** Any other type: delegate to that IPAM plugin in CNI_PATH. */
  | { mode: "delegate"; type: string };

/** How pods are wired: a veth on a bridge (default), or a slave of the node's uplink. */
export type PodMode = "bridge" | "macvlan" | "ipvlan";
const POD_MODES: readonly PodMode[] = ["bridge", "macvlan", "ipvlan"];
export type MacvlanMode = "bridge" | "private" | "vepa" | "passthru";
const MACVLAN_MODES: readonly MacvlanMode[] = ["bridge", "private", "vepa", "passthru"];
export type IpvlanMode = "l2" | "l3" | "l3s";
const IPVLAN_MODES: readonly IpvlanMode[] = ["l2", "l3", "l3s"];

/** The macvlan/ipvlan settings (absent in bridge mode). */
export interface SlaveConf {
  kind: "macvlan" | "ipvlan";
  /** Undefined: the node's default-route interface, decided at ADD. */
  master?: string;
  /** The kernel's mode word for the kind (`bridge`, `private`, …; `l2`, `l3`, `l3s`). */
  linkMode: MacvlanMode | IpvlanMode;
  /** A slave of the master in the host namespace, so the node reaches its pods. */
  hostShim: boolean;
}

export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** `mode`: bridge unless the config says macvlan or ipvlan. */
  mode: PodMode;
  /** Set when `mode` is macvlan or ipvlan. */
  slave?: SlaveConf;
  bridge: string;
  /** Undefined: the MTU of the host's default-route interface, else 1500. */
  mtu?: number;
  isGateway: boolean;
  isDefaultGateway: boolean;
  hairpinMode: boolean;
  promiscMode: boolean;
  ipMasq: boolean;
  ipam: IpamConf;
  dns?: Dns;
  logFile?: string;
  logLevel?: Level;
  /** Static addresses from runtimeConfig.ips or args.cni.ips (CNI_ARGS IP= is in the env). */
  requestedIPs: string[];
  /** The pod MAC from runtimeConfig.mac or args.cni.mac. */
  mac?: string;
  prevResult?: Result;
  /** GC: the attachments to keep (undefined when the key is absent). */
  validAttachments?: { containerID: string; ifname: string }[];
  /** The document as received, for delegated plugins. */
  raw: Record<string, unknown>;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function invalid(field: string, value: unknown, why: string): CniError {
  return new CniError(
    CniCode.InvalidConfig,
    `invalid network config: ${field} ${JSON.stringify(value)} ${why}`,
  );
}

/** Whether `mac` is a valid unicast hardware address. */
export function isUnicastMac(mac: string): boolean {
  return MAC_RE.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

/** Parses the JSON text; error 6 when it is not JSON or not a JSON object. */
function parseJsonConfig(stdin: string): Record<string, unknown> {
  const doc = decodeJson(stdin, "cannot decode the network config: it is not valid JSON");
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new CniError(CniCode.DecodeFailure, "the network config is not a JSON object");
  }
  return doc as Record<string, unknown>;
}

function checkVersion(doc: Record<string, unknown>): CniVersion {
  const v = doc.cniVersion;
  if (v === undefined || v === "") throw invalid("cniVersion", v ?? "", "is required");
  if (!isSupportedVersion(v)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `incompatible CNI version ${JSON.stringify(v)}: ohno supports ${
        SUPPORTED_VERSIONS.join(", ")
      }`,
    );
  }
  return v;
}

function bool(doc: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = doc[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") throw invalid(key, v, "must be true or false");
  return v;
}

function str(doc: Record<string, unknown>, key: string, field = key): string | undefined {
  const v = doc[key];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw invalid(field, v, "must be a string");
  return v;
}

/** Keys of the reference bridge plugin that ohno does not implement (error 2 when set). */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  vlan: (v) => v !== 0 && v !== undefined,
  vlanTrunk: (v) => Array.isArray(v) ? v.length > 0 : v !== undefined,
  preserveDefaultVlan: (v) => v === false,
  macspoofchk: (v) => v === true,
  enabledad: (v) => v === true,
  disableContainerInterface: (v) => v === true,
};

function parseRoutes(v: unknown, field: string): Route[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(field, v, "must be a list of {dst, gw}");
  return v.map((r, i) => {
    const x = (typeof r === "object" && r !== null ? r : {}) as Record<string, unknown>;
    if (typeof x.dst !== "string" || !isCidr(x.dst)) {
      throw invalid(`${field}[${i}].dst`, x.dst, "is not a CIDR");
    }
    const out: Route = { dst: x.dst };
    if (x.gw !== undefined && x.gw !== "") {
      if (typeof x.gw !== "string" || !isIp(x.gw)) {
        throw invalid(`${field}[${i}].gw`, x.gw, "is not an IP address");
      }
      out.gw = x.gw;
    }
    return out;
  });
}

/** Parses the `ipam` section (required; its `type` picks the IPAM driver). */
function parseIpam(doc: Record<string, unknown>): IpamConf {
  const ipam = doc.ipam;
  if (ipam === undefined || ipam === null) {
    throw invalid("ipam", ipam ?? null, 'is required (e.g. {"type": "ohno", "ranges": …})');
  }
  if (typeof ipam !== "object" || Array.isArray(ipam)) {
    throw invalid("ipam", ipam, "must be an object");
  }
  const x = ipam as Record<string, unknown>;
  const type = x.type;
  if (typeof type !== "string" || type === "") {
    throw invalid("ipam.type", type ?? "", "is required");
  }
  if (type !== "ohno" && type !== "ohno-ipam") {
    if (!NAME_RE.test(type) || type.includes("..")) {
      throw invalid("ipam.type", type, "is not a plugin name");
    }
    return { mode: "delegate", type };
  }
  const routes = parseRoutes(x.routes, "ipam.routes");
  const socket = str(x, "daemonSocket", "ipam.daemonSocket");
  const hasRanges = x.ranges !== undefined || x.subnet !== undefined;
  if (socket !== undefined) {
    if (hasRanges) {
      throw invalid(
        "ipam.daemonSocket",
        socket,
        "cannot be combined with ipam.ranges: the node agent owns the ranges",
      );
    }
    if (!socket.startsWith("/")) {
      throw invalid("ipam.daemonSocket", socket, "is not an absolute path");
    }
    return { mode: "agent", type, socket, routes };
  }
  if (!hasRanges) {
    throw invalid("ipam", ipam, "needs either ranges (embedded IPAM) or daemonSocket (node agent)");
  }
  // host-local's older single-range form: subnet/rangeStart/rangeEnd/gateway at the top.
  const specs = x.ranges !== undefined ? x.ranges : [[{
    subnet: x.subnet,
    ...(x.rangeStart !== undefined ? { rangeStart: x.rangeStart } : {}),
    ...(x.rangeEnd !== undefined ? { rangeEnd: x.rangeEnd } : {}),
    ...(x.gateway !== undefined ? { gateway: x.gateway } : {}),
  }]];
  let sets: RangeSet[];
  try {
    sets = parseRangeSets(specs, x.ranges !== undefined ? "ipam.ranges" : "ipam");
  } catch (e) {
    if (e instanceof IpamConfigError) {
      throw new CniError(CniCode.InvalidConfig, `invalid network config: ${e.message}`);
    }
    throw e;
  }
  if (
    sets.filter((s) => s[0]!.family === 4).length > 1 ||
    sets.filter((s) => s[0]!.family === 6).length > 1
  ) {
    throw invalid("ipam.ranges", specs, "has two range sets of one family (one per family)");
  }
  const dataDir = str(x, "dataDir", "ipam.dataDir") ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/")) throw invalid("ipam.dataDir", dataDir, "is not an absolute path");
  return { mode: "embedded", type, sets, routes, dataDir };
}

function parseDns(v: unknown): Dns | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw invalid("dns", v, "must be an object");
  const x = v as Record<string, unknown>;
  const list = (k: string) => {
    const a = x[k];
    if (a === undefined) return undefined;
    if (!Array.isArray(a) || !a.every((e) => typeof e === "string")) {
      throw invalid(`dns.${k}`, a, "must be a list of strings");
    }
    return a as string[];
  };
  const out: Dns = {};
  const ns = list("nameservers");
  if (ns) {
    for (const n of ns) if (!isIp(n)) throw invalid("dns.nameservers", n, "is not an IP address");
    out.nameservers = ns;
  }
  const domain = str(x, "domain", "dns.domain");
  if (domain) out.domain = domain;
  const search = list("search");
  if (search) out.search = search;
  const options = list("options");
  if (options) out.options = options;
  return out;
}

function parseStaticIps(v: unknown, field: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(field, v, "must be a list of addresses");
  return v.map((ip) => {
    if (typeof ip !== "string") throw invalid(field, ip, "is not an address");
    const bare = ip.replace(/\/\d+$/, "");
    if (!isIp(bare)) throw invalid(field, ip, "is not an IP address");
    return normalizeIp(bare);
  });
}

function parseMac(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string" || !isUnicastMac(v)) {
    throw invalid(field, v, "is not a unicast MAC address (aa:bb:cc:dd:ee:ff)");
  }
  return v.toLowerCase();
}

function parseValidAttachments(doc: Record<string, unknown>): NetConf["validAttachments"] {
  const key = doc["cni.dev/valid-attachments"] !== undefined
    ? "cni.dev/valid-attachments"
    : doc["cni.dev/attachments"] !== undefined
    ? "cni.dev/attachments"
    : undefined;
  if (!key) return undefined;
  const v = doc[key];
  if (!Array.isArray(v)) throw invalid(key, v, "must be a list of {containerID, ifname}");
  return v.map((a, i) => {
    const x = (typeof a === "object" && a !== null ? a : {}) as Record<string, unknown>;
    if (typeof x.containerID !== "string" || typeof x.ifname !== "string") {
      throw invalid(`${key}[${i}]`, a, "needs containerID and ifname");
    }
    return { containerID: x.containerID, ifname: x.ifname };
  });
}

function parseMode(doc: Record<string, unknown>): PodMode {
  const v = doc.mode;
  if (v === undefined || v === null || v === "") return "bridge";
  if (typeof v !== "string" || !(POD_MODES as readonly string[]).includes(v)) {
    throw invalid("mode", v, `is not a pod mode (${POD_MODES.join(", ")})`);
  }
  return v as PodMode;
}

/** The macvlan/ipvlan keys: `master`, `macvlanMode` or `ipvlanMode`, `hostShim`. */
function parseSlave(doc: Record<string, unknown>, kind: "macvlan" | "ipvlan"): SlaveConf {
  const master = str(doc, "master");
  if (master !== undefined) {
    const problem = ifnameProblem(master);
    if (problem) {
      throw new CniError(CniCode.InvalidConfig, `invalid network config: master ${problem}`);
    }
  }
  const key = kind === "macvlan" ? "macvlanMode" : "ipvlanMode";
  const other = kind === "macvlan" ? "ipvlanMode" : "macvlanMode";
  if (doc[other] !== undefined && doc[other] !== null) {
    throw invalid(other, doc[other], `does not apply in ${kind} mode (use ${key})`);
  }
  const modes: readonly string[] = kind === "macvlan" ? MACVLAN_MODES : IPVLAN_MODES;
  const linkMode = str(doc, key) ?? modes[0]!;
  if (!modes.includes(linkMode)) {
    throw invalid(key, linkMode, `is not one of the ${kind} modes (${modes.join(", ")})`);
  }
  const hostShim = bool(doc, "hostShim", false);
  if (hostShim && kind === "macvlan" && linkMode !== "bridge") {
    throw invalid(
      "hostShim",
      true,
      `needs macvlanMode bridge: in ${linkMode} mode the shim cannot reach the pods`,
    );
  }
  return {
    kind,
    ...(master !== undefined ? { master } : {}),
    linkMode: linkMode as MacvlanMode | IpvlanMode,
    hostShim,
  };
}

/**
 * Parses the main plugin's config. `forIpamFace` relaxes the main-plugin keys: the
 * `ohno-ipam` face reads only `ipam` from another plugin's config.
 */
export function loadNetConf(stdin: string, opts: { forIpamFace?: boolean } = {}): NetConf {
  const doc = parseJsonConfig(stdin);
  const { cniVersion, name, type } = parseIdentity(doc, opts);
  const { bridge, mode, mtu, isGateway, isDefaultGateway } = parseLinkKeys(doc, opts);
  const { requestedIPs, mac, macField } = parseRuntimeArgs(doc);
  const logLevel = str(doc, "logLevel");
  const logFile = str(doc, "logFile");
  if (logFile !== undefined && !logFile.startsWith("/")) {
    throw invalid("logFile", logFile, "is not an absolute path");
  }
  const conf: NetConf = {
    cniVersion,
    name,
    type,
    mode,
    bridge,
    isGateway,
    isDefaultGateway,
    hairpinMode: opts.forIpamFace ? false : bool(doc, "hairpinMode", false),
    promiscMode: opts.forIpamFace ? false : bool(doc, "promiscMode", false),
    ipMasq: opts.forIpamFace ? false : bool(doc, "ipMasq", false),
    ipam: parseIpam(doc),
    requestedIPs,
    raw: doc,
  };
  if (mtu !== undefined) setMtu(conf, mtu);
  if (mode !== "bridge") setSlave(conf, doc, mode, mac, macField);
  const dns = parseDns(doc.dns);
  if (dns) conf.dns = dns;
  if (logFile) conf.logFile = logFile;
  if (logLevel) conf.logLevel = parseLevel(logLevel);
  if (mac) conf.mac = mac;
  if (doc.prevResult !== undefined && doc.prevResult !== null) {
    conf.prevResult = parseResult(doc.prevResult);
  }
  const valid = parseValidAttachments(doc);
  if (valid) conf.validAttachments = valid;
  return conf;
}

/** cniVersion, name and type; not a conflist; no unsupported field (main plugin). */
function parseIdentity(
  doc: Record<string, unknown>,
  opts: { forIpamFace?: boolean },
): { cniVersion: NetConf["cniVersion"]; name: string; type: string } {
  const cniVersion = checkVersion(doc);
  if (Array.isArray(doc.plugins)) {
    throw invalid(
      "plugins",
      `[${doc.plugins.length} plugins]`,
      "is a network configuration list; the runtime passes each plugin its own config",
    );
  }
  const name = doc.name;
  if (typeof name !== "string" || name === "") throw invalid("name", name ?? "", "is required");
  if (!NAME_RE.test(name)) {
    throw invalid(
      "name",
      name,
      "is not valid (letters, digits, '_', '.', '-'; first alphanumeric)",
    );
  }
  const type = typeof doc.type === "string" ? doc.type : "";
  if (!opts.forIpamFace) {
    if (type === "") throw invalid("type", doc.type ?? "", "is required");
    for (const [k, isSet] of Object.entries(UNSUPPORTED)) {
      if (doc[k] !== undefined && isSet(doc[k])) {
        throw new CniError(
          CniCode.UnsupportedField,
          `unsupported field in network config: ${k}=${
            JSON.stringify(doc[k])
          } (ohno does not implement it)`,
        );
      }
    }
  }
  return { cniVersion, name, type };
}

/** bridge, mode, mtu and the gateway flags (the `ohno-ipam` face's defaults). */
function parseLinkKeys(doc: Record<string, unknown>, opts: { forIpamFace?: boolean }): {
  bridge: string;
  mode: PodMode;
  mtu: number | undefined;
  isGateway: boolean;
  isDefaultGateway: boolean;
} {
  const bridge = opts.forIpamFace ? DEFAULT_BRIDGE : (str(doc, "bridge") ?? DEFAULT_BRIDGE);
  const bridgeProblem = ifnameProblem(bridge);
  if (bridgeProblem) {
    throw new CniError(
      CniCode.InvalidConfig,
      `invalid network config: bridge ${bridgeProblem}`,
    );
  }
  const mode = opts.forIpamFace ? "bridge" : parseMode(doc);
  let mtu: number | undefined;
  if (!opts.forIpamFace && doc.mtu !== undefined && doc.mtu !== null && doc.mtu !== 0) {
    if (
      typeof doc.mtu !== "number" || !Number.isInteger(doc.mtu) || doc.mtu < 68 || doc.mtu > 65535
    ) {
      throw invalid("mtu", doc.mtu, "must be an integer from 68 to 65535");
    }
    mtu = doc.mtu;
  }
  const isDefaultGateway = opts.forIpamFace ? false : bool(doc, "isDefaultGateway", true);
  const isGateway = opts.forIpamFace ? false : bool(doc, "isGateway", true);
  if (mode === "bridge" && isDefaultGateway && !isGateway) {
    throw invalid("isGateway", false, "must be true when isDefaultGateway is true");
  }
  return { bridge, mode, mtu, isGateway, isDefaultGateway };
}

/**
 * Static IPs and MAC from runtimeConfig (preferred) or args.cni; `macField` names the
 * key the MAC came from.
 */
function parseRuntimeArgs(doc: Record<string, unknown>): {
  requestedIPs: string[];
  mac: string | undefined;
  macField: string;
} {
  const rc = doc.runtimeConfig;
  if (rc !== undefined && (typeof rc !== "object" || rc === null || Array.isArray(rc))) {
    throw invalid("runtimeConfig", rc, "must be an object");
  }
  const rcx = (rc ?? {}) as Record<string, unknown>;
  const args = (typeof doc.args === "object" && doc.args !== null ? doc.args : {}) as Record<
    string,
    unknown
  >;
  const argsCni = (typeof args.cni === "object" && args.cni !== null ? args.cni : {}) as Record<
    string,
    unknown
  >;
  const requestedIPs = rcx.ips !== undefined
    ? parseStaticIps(rcx.ips, "runtimeConfig.ips")
    : parseStaticIps(argsCni.ips, "args.cni.ips");
  const mac = parseMac(rcx.mac, "runtimeConfig.mac") ?? parseMac(argsCni.mac, "args.cni.mac");
  const macField = rcx.mac !== undefined ? "runtimeConfig.mac" : "args.cni.mac";
  return { requestedIPs, mac, macField };
}

/** Sets `conf.mtu`; an IPv6 range needs at least the IPv6 minimum. */
function setMtu(conf: NetConf, mtu: number): void {
  conf.mtu = mtu;
  const ipam = conf.ipam;
  if (
    mtu < IPV6_MIN_MTU && ipam.mode === "embedded" && ipam.sets.some((s) => s[0]!.family === 6)
  ) {
    throw invalid(
      "mtu",
      mtu,
      `is below ${IPV6_MIN_MTU}, the least IPv6 works with, and ipam.ranges has an IPv6 range`,
    );
  }
}

/** Sets `conf.slave` (macvlan or ipvlan mode) and refuses what that mode cannot do. */
function setSlave(
  conf: NetConf,
  doc: Record<string, unknown>,
  mode: "macvlan" | "ipvlan",
  mac: string | undefined,
  macField: string,
): void {
  conf.slave = parseSlave(doc, mode);
  if (conf.ipMasq) {
    throw invalid(
      "ipMasq",
      true,
      `has no effect in ${mode} mode: pod traffic leaves through the master, not the host's stack`,
    );
  }
  if (conf.slave.kind === "ipvlan" && mac) {
    throw invalid(
      macField,
      mac,
      "cannot be set in ipvlan mode: ipvlan slaves share the master's MAC",
    );
  }
}
