/**
 * The node agent's configuration: a JSON file (`/etc/ohno/ohno.json` by default), then
 * the environment, then flags, each overriding the one before; validated into one typed
 * {@link DaemonConfig}. Every host path is a setting, because the lab runs several agents
 * on one filesystem. The keys, flags and variables are documented in docs/daemon.md.
 *
 * @example
 * ```ts ignore
 * // In the `ohno daemon` command (commander):
 * for (const f of DAEMON_FLAGS) cmd.option(f.flags, f.description);
 * const config = loadDaemonConfig({ flags: cmd.opts(), env: (k) => Deno.env.get(k) });
 * ```
 * @module
 */

import {
  type Cidr,
  containsCidr,
  formatCidr,
  normalizeIp,
  overlaps,
  parseCidr,
  parseIp,
} from "../ipam/addr.ts";
import { type Level, parseLevel } from "../lib/log.ts";
import { parseListenAddress } from "./health.ts";

/** Where the file is read from unless `--config` or `OHNO_CONFIG` say otherwise. */
export const DEFAULT_CONFIG_FILE = "/etc/ohno/ohno.json";

/** How the node's own address is found. */
export type NodeIPSource = "auto" | "addresses" | "interface" | "default-route" | "kubernetes";

export interface NodeIPConfig {
  /**
   * `addresses`: as given; `interface`: the addresses of a named interface;
   * `default-route`: of the interface holding the default route; `kubernetes`: the
   * Node's InternalIP; `auto`: addresses if given, else Kubernetes when it is on, else
   * the default-route interface.
   */
  source: NodeIPSource;
  /** At most one IPv4 and one IPv6 address (canonical). */
  addresses: string[];
  interface?: string;
}

export interface PoolConfig {
  /** Canonical CIDR. */
  cidr: string;
  /** Prefix length of one node block (default 24 for IPv4, 64 for IPv6). */
  blockPrefix: number;
}

/** The datastore, in the shape `ohno ipam` documents in docs/cli.md. */
export interface DatastoreConfig {
  type: "etcd" | "local";
  etcd?: { endpoints: string[]; ca?: string; cert?: string; key?: string; serverName?: string };
  /** The local store's directory (type `local`). */
  dataDir: string;
}

export interface DaemonConfig {
  /** The file that was read, or undefined when none was (defaults only). */
  file: string | undefined;
  nodeName: string;
  nodeIP: NodeIPConfig;
  backend: "host-gw" | "vxlan" | "bgp";
  /** The vxlan backend's settings (read whatever the backend; used by vxlan). */
  vxlan: { vni: number; port: number; directRouting: boolean };
  /** The bgp backend's settings (read whatever the backend; used by bgp). */
  bgp: BgpConfig;
  /** Pod MTU, or `auto` (the underlay interface's MTU minus the backend's overhead). */
  mtu: number | "auto";
  pools: PoolConfig[];
  /** The pod address space (masquerade exempts traffic inside it). Default: the pools. */
  clusterCIDRs: string[];
  masquerade: boolean;
  datastore: DatastoreConfig;
  kubernetes: { enabled: "auto" | "on" | "off"; kubeconfig?: string };
  cniBinDir: string;
  cniConfDir: string;
  conflistName: string;
  networkName: string;
  bridge: string;
  runDir: string;
  socket: string;
  stateDir: string;
  logFile: string;
  logLevel: Level;
  resyncPeriodMs: number;
  metricsAddress: string;
  /** The CNI plugin's log file (written into the conflist). */
  cniLogFile: string;
  /** How often allocations of pods that no longer exist are looked for (Kubernetes on). */
  gcPeriodMs: number;
  /** How old an allocation must be before GC may release it. */
  gcGracePeriodMs: number;
}

/** A BGP peer outside the cluster (a top-of-rack router). */
export interface BgpPeerConfig {
  /** Canonical address. */
  address: string;
  asNumber: number;
  password?: string;
}

export interface BgpConfig {
  /** Undefined: derived from the node address (routing/bgp.ts). */
  asNumber?: number;
  /** Undefined: derived from the node address. */
  routerId?: string;
  nodeMesh: boolean;
  routeReflector: boolean;
  peers: BgpPeerConfig[];
  /** Seconds. */
  holdTime: number;
  gracefulRestart: boolean;
}

/** A configuration value is wrong; the message names where it came from, the key and the value. */
export class DaemonConfigError extends Error {
  override name = "DaemonConfigError";
  constructor(
    message: string,
    /** The key (`mtu`, `datastore.etcd.endpoints`). */
    readonly key: string,
    /** Where the value came from: the file, `--flag`, or `env NAME`. */
    readonly source: string,
  ) {
    super(message);
  }
}

/** Flags as the CLI parser hands them over (all strings). */
export interface DaemonFlags {
  config?: string;
  nodeName?: string;
  nodeIp?: string;
  nodeIpInterface?: string;
  nodeIpSource?: string;
  backend?: string;
  vxlanVni?: string;
  vxlanPort?: string;
  vxlanDirectRouting?: string;
  bgpAsNumber?: string;
  bgpRouterId?: string;
  bgpNodeMesh?: string;
  bgpRouteReflector?: string;
  bgpPeers?: string;
  bgpHoldTime?: string;
  bgpGracefulRestart?: string;
  mtu?: string;
  pool?: string;
  clusterCidr?: string;
  masquerade?: string;
  datastore?: string;
  etcdEndpoints?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  dataDir?: string;
  kubernetes?: string;
  kubeconfig?: string;
  cniBinDir?: string;
  cniConfDir?: string;
  conflistName?: string;
  networkName?: string;
  bridge?: string;
  runDir?: string;
  socket?: string;
  stateDir?: string;
  logFile?: string;
  logLevel?: string;
  resyncPeriod?: string;
  metricsAddress?: string;
  cniLogFile?: string;
  gcPeriod?: string;
  gcGracePeriod?: string;
}

interface FlagSpec {
  /** Commander syntax. */
  flags: string;
  description: string;
  /** The DaemonFlags property commander fills. */
  name: keyof DaemonFlags;
  /** The file key it overrides. */
  key: string;
  /** The environment variable that sets it too, if any. */
  env?: string;
}

/** Every flag of `ohno daemon` with the key it sets (register them in the CLI in a loop). */
export const DAEMON_FLAGS: readonly FlagSpec[] = [
  {
    flags: "--config <file>",
    description: `configuration file (default ${DEFAULT_CONFIG_FILE})`,
    name: "config",
    key: "(file)",
    env: "OHNO_CONFIG",
  },
  {
    flags: "--node-name <name>",
    description: "this node's name (default: $NODE_NAME, else the host name)",
    name: "nodeName",
    key: "nodeName",
    env: "NODE_NAME",
  },
  {
    flags: "--node-ip <addr[,addr]>",
    description: "this node's address(es), at most one IPv4 and one IPv6",
    name: "nodeIp",
    key: "nodeIP.addresses",
    env: "NODE_IP",
  },
  {
    flags: "--node-ip-interface <ifname>",
    description: "take this node's address from this interface",
    name: "nodeIpInterface",
    key: "nodeIP.interface",
  },
  {
    flags: "--node-ip-source <source>",
    description: "auto, addresses, interface, default-route or kubernetes",
    name: "nodeIpSource",
    key: "nodeIP.source",
  },
  {
    flags: "--backend <type>",
    description: "routing backend: host-gw, vxlan or bgp",
    name: "backend",
    key: "backend",
  },
  {
    flags: "--vxlan-vni <n>",
    description: "vxlan: the VXLAN network identifier (default 1)",
    name: "vxlanVni",
    key: "vxlanVni",
  },
  {
    flags: "--vxlan-port <port>",
    description: "vxlan: the UDP port (default 8472; 4789 is IANA's)",
    name: "vxlanPort",
    key: "vxlanPort",
  },
  {
    flags: "--vxlan-direct-routing <on|off>",
    description: "vxlan: host-gw routes to peers on this node's own subnet",
    name: "vxlanDirectRouting",
    key: "vxlanDirectRouting",
  },
  {
    flags: "--bgp-as-number <n>",
    description: "bgp: this node's AS number (default: 4200000000 + low 26 bits of the node IP)",
    name: "bgpAsNumber",
    key: "bgpAsNumber",
  },
  {
    flags: "--bgp-router-id <ipv4>",
    description: "bgp: the router id (default: the node's IPv4 address)",
    name: "bgpRouterId",
    key: "bgpRouterId",
  },
  {
    flags: "--bgp-node-mesh <on|off>",
    description: "bgp: peer with every other node (default on)",
    name: "bgpNodeMesh",
    key: "bgpNodeMesh",
  },
  {
    flags: "--bgp-route-reflector <on|off>",
    description: "bgp: this node is a route reflector (with the node mesh off)",
    name: "bgpRouteReflector",
    key: "bgpRouteReflector",
  },
  {
    flags: "--bgp-peers <AS@ADDRESS,...>",
    description: "bgp: peers outside the cluster, e.g. 65000@172.31.0.1 (passwords: file only)",
    name: "bgpPeers",
    key: "bgpPeers",
  },
  {
    flags: "--bgp-hold-time <duration>",
    description: "bgp: hold time of the sessions (default 90s)",
    name: "bgpHoldTime",
    key: "bgpHoldTime",
  },
  {
    flags: "--bgp-graceful-restart <on|off>",
    description: "bgp: graceful restart on the sessions and the kernel routes (default on)",
    name: "bgpGracefulRestart",
    key: "bgpGracefulRestart",
  },
  { flags: "--mtu <mtu|auto>", description: "pod interface MTU", name: "mtu", key: "mtu" },
  {
    flags: "--pool <cidr[:prefix],…>",
    description: "address pools, each with its node block prefix length",
    name: "pool",
    key: "pools",
  },
  {
    flags: "--cluster-cidr <cidr,…>",
    description: "the pod address space (default: the pools)",
    name: "clusterCidr",
    key: "clusterCIDRs",
  },
  {
    flags: "--masquerade <on|off>",
    description: "masquerade pod traffic leaving the cluster CIDRs",
    name: "masquerade",
    key: "masquerade",
  },
  {
    flags: "--datastore <etcd|local>",
    description: "where cluster IPAM state lives",
    name: "datastore",
    key: "datastore.type",
    env: "OHNO_DATASTORE",
  },
  {
    flags: "--etcd-endpoints <url,…>",
    description: "etcd endpoints",
    name: "etcdEndpoints",
    key: "datastore.etcd.endpoints",
    env: "OHNO_ETCD_ENDPOINTS",
  },
  {
    flags: "--etcd-ca <file>",
    description: "CA certificate for etcd",
    name: "etcdCa",
    key: "datastore.etcd.ca",
    env: "OHNO_ETCD_CA",
  },
  {
    flags: "--etcd-cert <file>",
    description: "client certificate for etcd",
    name: "etcdCert",
    key: "datastore.etcd.cert",
    env: "OHNO_ETCD_CERT",
  },
  {
    flags: "--etcd-key <file>",
    description: "client key for etcd",
    name: "etcdKey",
    key: "datastore.etcd.key",
    env: "OHNO_ETCD_KEY",
  },
  {
    flags: "--data-dir <dir>",
    description: "the local store's directory (datastore local)",
    name: "dataDir",
    key: "datastore.dataDir",
    env: "OHNO_DATA_DIR",
  },
  {
    flags: "--kubernetes <auto|on|off>",
    description: "Kubernetes integration (auto: on in a pod or with --kubeconfig)",
    name: "kubernetes",
    key: "kubernetes.enabled",
  },
  {
    flags: "--kubeconfig <file>",
    description: "kubeconfig to reach the API server with",
    name: "kubeconfig",
    key: "kubernetes.kubeconfig",
    env: "KUBECONFIG",
  },
  {
    flags: "--cni-bin-dir <dir>",
    description: "where the plugin binary is installed",
    name: "cniBinDir",
    key: "cniBinDir",
  },
  {
    flags: "--cni-conf-dir <dir>",
    description: "where the conflist is written",
    name: "cniConfDir",
    key: "cniConfDir",
  },
  {
    flags: "--conflist-name <name>",
    description: "the conflist's file name",
    name: "conflistName",
    key: "conflistName",
  },
  {
    flags: "--network-name <name>",
    description: "the CNI network name",
    name: "networkName",
    key: "networkName",
  },
  { flags: "--bridge <name>", description: "the pods' bridge", name: "bridge", key: "bridge" },
  {
    flags: "--run-dir <dir>",
    description: "runtime directory (socket, pid)",
    name: "runDir",
    key: "runDir",
  },
  {
    flags: "--socket <path>",
    description: "the IPAM socket (default RUN_DIR/ipam.sock)",
    name: "socket",
    key: "socket",
  },
  {
    flags: "--state-dir <dir>",
    description: "persistent state directory",
    name: "stateDir",
    key: "stateDir",
  },
  {
    flags: "--log-file <file>",
    description: "log file",
    name: "logFile",
    key: "logFile",
    env: "OHNO_LOG_FILE",
  },
  {
    flags: "--log-level <level>",
    description: "debug, info, warn or error",
    name: "logLevel",
    key: "logLevel",
    env: "OHNO_LOG_LEVEL",
  },
  {
    flags: "--resync-period <duration>",
    description: "full route reconcile period (e.g. 30s)",
    name: "resyncPeriod",
    key: "resyncPeriod",
  },
  {
    flags: "--metrics-address <host:port>",
    description: "where /healthz, /readyz and /metrics are served",
    name: "metricsAddress",
    key: "metricsAddress",
  },
  {
    flags: "--cni-log-file <file>",
    description: "the CNI plugin's log file (written into the conflist)",
    name: "cniLogFile",
    key: "cniLogFile",
  },
  {
    flags: "--gc-period <duration>",
    description: "how often to release addresses of pods that are gone (e.g. 60s)",
    name: "gcPeriod",
    key: "gcPeriod",
  },
  {
    flags: "--gc-grace-period <duration>",
    description: "minimum age of an allocation before GC may release it (e.g. 5m)",
    name: "gcGracePeriod",
    key: "gcGracePeriod",
  },
];

/** The file's shape (every key optional; unknown keys are refused). */
const FILE_KEYS = [
  "nodeName",
  "nodeIP",
  "backend",
  "vxlanVni",
  "vxlanPort",
  "vxlanDirectRouting",
  "bgpAsNumber",
  "bgpRouterId",
  "bgpNodeMesh",
  "bgpRouteReflector",
  "bgpPeers",
  "bgpHoldTime",
  "bgpGracefulRestart",
  "mtu",
  "pools",
  "clusterCIDRs",
  "masquerade",
  "datastore",
  "kubernetes",
  "cniBinDir",
  "cniConfDir",
  "conflistName",
  "networkName",
  "bridge",
  "runDir",
  "socket",
  "stateDir",
  "logFile",
  "logLevel",
  "resyncPeriod",
  "metricsAddress",
  "cniLogFile",
  "gcPeriod",
  "gcGracePeriod",
] as const;

type Json = Record<string, unknown>;

/** One setting with where it came from. */
interface Setting<T> {
  value: T;
  source: string;
}

type Draft = {
  nodeName?: Setting<string>;
  nodeIPSource?: Setting<NodeIPSource>;
  nodeIPAddresses?: Setting<string[]>;
  nodeIPInterface?: Setting<string>;
  backend?: Setting<"host-gw" | "vxlan" | "bgp">;
  vxlanVni?: Setting<number>;
  vxlanPort?: Setting<number>;
  vxlanDirectRouting?: Setting<boolean>;
  bgpAsNumber?: Setting<number>;
  bgpRouterId?: Setting<string>;
  bgpNodeMesh?: Setting<boolean>;
  bgpRouteReflector?: Setting<boolean>;
  bgpPeers?: Setting<BgpPeerConfig[]>;
  bgpHoldTime?: Setting<number>;
  bgpGracefulRestart?: Setting<boolean>;
  mtu?: Setting<number | "auto">;
  pools?: Setting<PoolConfig[]>;
  clusterCIDRs?: Setting<string[]>;
  masquerade?: Setting<boolean>;
  datastoreType?: Setting<"etcd" | "local">;
  etcdEndpoints?: Setting<string[]>;
  etcdCa?: Setting<string>;
  etcdCert?: Setting<string>;
  etcdKey?: Setting<string>;
  etcdServerName?: Setting<string>;
  dataDir?: Setting<string>;
  kubernetesEnabled?: Setting<"auto" | "on" | "off">;
  kubeconfig?: Setting<string>;
  cniBinDir?: Setting<string>;
  cniConfDir?: Setting<string>;
  conflistName?: Setting<string>;
  networkName?: Setting<string>;
  bridge?: Setting<string>;
  runDir?: Setting<string>;
  socket?: Setting<string>;
  stateDir?: Setting<string>;
  logFile?: Setting<string>;
  logLevel?: Setting<Level>;
  resyncPeriodMs?: Setting<number>;
  metricsAddress?: Setting<string>;
  cniLogFile?: Setting<string>;
  gcPeriodMs?: Setting<number>;
  gcGracePeriodMs?: Setting<number>;
};

function fail(source: string, key: string, value: unknown, why: string): never {
  throw new DaemonConfigError(`${source}: ${key} ${JSON.stringify(value)} ${why}`, key, source);
}

// ---- value parsers: each names the source, the key and the value when it refuses ----

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IFNAME = /^[^\s/:]{1,15}$/;

function str(v: unknown, src: string, key: string): string {
  if (typeof v !== "string" || v === "") fail(src, key, v, "must be a non-empty string");
  return v;
}

function absPath(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  if (!s.startsWith("/")) fail(src, key, v, "must be an absolute path");
  if (s.includes("\0")) fail(src, key, v, "must not contain NUL");
  return s.length > 1 ? s.replace(/\/+$/, "") : s;
}

function list(v: unknown, src: string, key: string): string[] {
  if (typeof v === "string") return v.split(",").map((x) => x.trim()).filter(Boolean);
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
    fail(src, key, v, "must be a list of strings");
  }
  return v as string[];
}

function nodeName(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  if (s.length > 253 || !DNS_SUBDOMAIN.test(s)) {
    fail(src, key, v, "is not a valid node name (lowercase letters, digits, '-' and '.')");
  }
  return s;
}

function ifname(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  if (!IFNAME.test(s)) {
    fail(src, key, v, "is not an interface name (1-15 characters, no blanks, '/' or ':')");
  }
  return s;
}

function oneOf<T extends string>(v: unknown, src: string, key: string, options: readonly T[]): T {
  if (typeof v !== "string" || !options.includes(v as T)) {
    fail(src, key, v, `must be one of ${options.join(", ")}`);
  }
  return v as T;
}

function bool(v: unknown, src: string, key: string): boolean {
  if (typeof v === "boolean") return v;
  if (typeof v === "string") {
    const s = v.toLowerCase();
    if (["on", "true", "yes", "1"].includes(s)) return true;
    if (["off", "false", "no", "0"].includes(s)) return false;
  }
  return fail(src, key, v, "must be true or false (on/off)");
}

function nodeAddresses(v: unknown, src: string, key: string): string[] {
  const out: string[] = [];
  const seen = new Set<number>();
  for (const item of list(v, src, key)) {
    let ip;
    try {
      ip = parseIp(item);
    } catch {
      return fail(src, key, item, "is not an IP address");
    }
    if (seen.has(ip.family)) fail(src, key, v, `holds more than one IPv${ip.family} address`);
    seen.add(ip.family);
    out.push(normalizeIp(item));
  }
  if (out.length === 0) fail(src, key, v, "must hold at least one address");
  return out;
}

function cidr(v: unknown, src: string, key: string): Cidr {
  try {
    return parseCidr(str(v, src, key));
  } catch {
    return fail(src, key, v, "is not a CIDR (ADDRESS/PREFIX)");
  }
}

function intIn(v: unknown, src: string, key: string, min: number, max: number): number {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    fail(src, key, v, `must be a whole number ${min}-${max}`);
  }
  return n;
}

function routerId(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  let ok = false;
  try {
    ok = parseIp(s).family === 4;
  } catch {
    // not an address
  }
  if (!ok) fail(src, key, v, "is not an IPv4 address (BGP router ids are written as IPv4)");
  return normalizeIp(s);
}

/** File: [{address, asNumber, password?}, …]; flag and environment: "AS@ADDRESS,…". */
function bgpPeers(v: unknown, src: string, key: string): BgpPeerConfig[] {
  const items: { address: unknown; asNumber: unknown; password?: unknown }[] = [];
  if (typeof v === "string") {
    for (const part of list(v, src, key)) {
      const m = /^(\d+)@(.+)$/.exec(part);
      if (!m) fail(src, key, part, "is not AS@ADDRESS (e.g. 65000@172.31.0.1)");
      items.push({ asNumber: m[1], address: m[2] });
    }
  } else if (Array.isArray(v)) {
    v.forEach((p, i) => {
      items.push(object(p, src, `${key}[${i}]`, ["address", "asNumber", "password"]) as never);
    });
  } else fail(src, key, v, "must be a list of peers");
  return items.map((p, i) => {
    const k = typeof v === "string" ? key : `${key}[${i}]`;
    let address: string;
    try {
      address = normalizeIp(str(p.address, src, `${k}.address`));
    } catch (e) {
      if (e instanceof DaemonConfigError) throw e;
      return fail(src, `${k}.address`, p.address, "is not an IP address");
    }
    const asNumber = intIn(p.asNumber, src, `${k}.asNumber`, 1, 4_294_967_294);
    if (p.password === undefined) return { address, asNumber };
    const pw = str(p.password, src, `${k}.password`);
    if ([...pw].some((c) => c === '"' || c === "\\" || c.charCodeAt(0) < 32) || pw.length > 80) {
      fail(
        src,
        `${k}.password`,
        "(hidden)",
        'must be 1-80 characters without ", \\ or control characters',
      );
    }
    return { address, asNumber, password: pw };
  });
}

function mtu(v: unknown, src: string, key: string): number | "auto" {
  if (v === "auto") return v;
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 576 || n > 65535) {
    fail(src, key, v, 'must be "auto" or a whole number 576-65535');
  }
  return n;
}

/** `30s`, `500ms`, `2m`, `1h`, or a number of seconds. */
export function parseDuration(v: unknown, src: string, key: string): number {
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  let ms: number | undefined;
  if (typeof v === "number" && Number.isFinite(v)) ms = v * 1000;
  else if (typeof v === "string") {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
    if (m) ms = Number(m[1]) * unit[(m[2] ?? "s") as keyof typeof unit];
  }
  if (ms === undefined || !Number.isFinite(ms)) {
    fail(src, key, v, "is not a duration (e.g. 30s, 500ms, 2m)");
  }
  if (ms < 100 || ms > 86_400_000) fail(src, key, v, "must be between 100ms and 24h");
  return Math.round(ms);
}

function pools(v: unknown, src: string, key: string): PoolConfig[] {
  // File: [{cidr, blockPrefix?}, …]; flag: "10.244.0.0/16:24,fd10:244::/48:64".
  const items: { cidr: unknown; blockPrefix?: unknown }[] = [];
  if (typeof v === "string") {
    for (const part of list(v, src, key)) {
      const m = /^(.+\/\d+)(?::(\d+))?$/.exec(part);
      if (!m) fail(src, key, part, "is not CIDR[:BLOCKPREFIX]");
      items.push({ cidr: m[1], ...(m[2] !== undefined ? { blockPrefix: Number(m[2]) } : {}) });
    }
  } else if (Array.isArray(v)) {
    v.forEach((p, i) => {
      if (typeof p !== "object" || p === null || Array.isArray(p)) {
        fail(src, `${key}[${i}]`, p, "must be an object {cidr, blockPrefix}");
      }
      const extra = Object.keys(p).filter((k) => k !== "cidr" && k !== "blockPrefix");
      if (extra.length) {
        fail(src, `${key}[${i}].${extra[0]}`, (p as Json)[extra[0]!], "is not a known key");
      }
      items.push(p as { cidr: unknown; blockPrefix?: unknown });
    });
  } else fail(src, key, v, "must be a list of pools");
  const out: PoolConfig[] = [];
  items.forEach((p, i) => {
    const fromFlag = typeof v === "string";
    const k = fromFlag ? key : `${key}[${i}]`;
    const c = cidr(p.cidr, src, fromFlag ? k : `${k}.cidr`);
    const bp = p.blockPrefix ?? (c.family === 4 ? Math.max(24, c.prefix) : Math.max(64, c.prefix));
    const maxBlock = c.family === 4 ? 30 : 126;
    if (typeof bp !== "number" || !Number.isInteger(bp) || bp < c.prefix || bp > maxBlock) {
      fail(
        src,
        `${k}.blockPrefix`,
        bp,
        `must be a prefix length ${c.prefix}-${maxBlock} for ${formatCidr(c)}`,
      );
    }
    out.push({ cidr: formatCidr(c), blockPrefix: bp });
  });
  return out;
}

function object(v: unknown, src: string, key: string, keys: readonly string[]): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    fail(src, key, v, "must be an object");
  }
  for (const k of Object.keys(v)) {
    if (!keys.includes(k)) {
      fail(
        src,
        key ? `${key}.${k}` : k,
        (v as Json)[k],
        `is not a known key (known: ${keys.join(", ")})`,
      );
    }
  }
  return v as Json;
}

// ---- layers ----

type Parse = (v: unknown, src: string, key: string) => unknown;

/**
 * Keys that read alike from the file, the environment and the flags: the same name
 * everywhere, one value, one check. The layers below handle only the structured ones.
 */
const SCALARS: Partial<Record<string, { draft: keyof Draft; parse: Parse }>> = {
  nodeName: { draft: "nodeName", parse: nodeName },
  backend: {
    draft: "backend",
    parse: (v, s, k) => oneOf(v, s, k, ["host-gw", "vxlan", "bgp"] as const),
  },
  bgpAsNumber: { draft: "bgpAsNumber", parse: (v, s, k) => intIn(v, s, k, 1, 4_294_967_294) },
  bgpRouterId: { draft: "bgpRouterId", parse: routerId },
  bgpNodeMesh: { draft: "bgpNodeMesh", parse: bool },
  bgpRouteReflector: { draft: "bgpRouteReflector", parse: bool },
  bgpPeers: { draft: "bgpPeers", parse: bgpPeers },
  bgpHoldTime: {
    draft: "bgpHoldTime",
    parse: (v, s, k) => {
      const ms = parseDuration(v, s, k);
      if (ms < 3000 || ms > 65_535_000 || ms % 1000) {
        fail(s, k, v, "must be whole seconds, 3s-65535s (BGP's hold time)");
      }
      return ms / 1000;
    },
  },
  bgpGracefulRestart: { draft: "bgpGracefulRestart", parse: bool },
  vxlanVni: { draft: "vxlanVni", parse: (v, s, k) => intIn(v, s, k, 1, 16_777_215) },
  vxlanPort: { draft: "vxlanPort", parse: (v, s, k) => intIn(v, s, k, 1, 65535) },
  vxlanDirectRouting: { draft: "vxlanDirectRouting", parse: bool },
  mtu: { draft: "mtu", parse: mtu },
  cniBinDir: { draft: "cniBinDir", parse: absPath },
  cniConfDir: { draft: "cniConfDir", parse: absPath },
  runDir: { draft: "runDir", parse: absPath },
  socket: { draft: "socket", parse: absPath },
  stateDir: { draft: "stateDir", parse: absPath },
  logFile: { draft: "logFile", parse: absPath },
  cniLogFile: { draft: "cniLogFile", parse: absPath },
  conflistName: { draft: "conflistName", parse: conflistName },
  networkName: { draft: "networkName", parse: networkName },
  bridge: { draft: "bridge", parse: ifname },
  logLevel: { draft: "logLevel", parse: level },
  resyncPeriod: { draft: "resyncPeriodMs", parse: parseDuration },
  gcPeriod: { draft: "gcPeriodMs", parse: parseDuration },
  gcGracePeriod: { draft: "gcGracePeriodMs", parse: parseDuration },
  metricsAddress: { draft: "metricsAddress", parse: listenAddress },
};

function fromFile(doc: unknown, src: string): Draft {
  const d: Draft = {};
  const top = object(doc, src, "", FILE_KEYS);
  const set = <K extends keyof Draft>(k: K, value: NonNullable<Draft[K]>["value"]) => {
    (d as Record<string, Setting<unknown>>)[k] = { value, source: src };
  };
  for (const [name, v] of Object.entries(top)) {
    const k = name as typeof FILE_KEYS[number];
    switch (k) {
      case "nodeIP": {
        const o = object(v, src, k, ["source", "addresses", "interface"]);
        if (o.source !== undefined) {
          set("nodeIPSource", oneOf(o.source, src, "nodeIP.source", NODE_IP_SOURCES));
        }
        if (o.addresses !== undefined) {
          set("nodeIPAddresses", nodeAddresses(o.addresses, src, "nodeIP.addresses"));
        }
        if (o.interface !== undefined) {
          set("nodeIPInterface", ifname(o.interface, src, "nodeIP.interface"));
        }
        break;
      }
      case "pools":
        set("pools", pools(v, src, k));
        break;
      case "clusterCIDRs":
        set("clusterCIDRs", list(v, src, k).map((c, i) => formatCidr(cidr(c, src, `${k}[${i}]`))));
        break;
      case "masquerade":
        if (typeof v !== "boolean") fail(src, k, v, "must be true or false");
        set("masquerade", v);
        break;
      case "datastore": {
        const o = object(v, src, k, ["type", "etcd", "dataDir"]);
        if (o.type !== undefined) {
          set("datastoreType", oneOf(o.type, src, "datastore.type", ["etcd", "local"] as const));
        }
        if (o.dataDir !== undefined) set("dataDir", absPath(o.dataDir, src, "datastore.dataDir"));
        if (o.etcd !== undefined) {
          const e = object(o.etcd, src, "datastore.etcd", [
            "endpoints",
            "ca",
            "cert",
            "key",
            "serverName",
          ]);
          if (e.endpoints !== undefined) {
            set("etcdEndpoints", endpoints(e.endpoints, src, "datastore.etcd.endpoints"));
          }
          if (e.ca !== undefined) set("etcdCa", absPath(e.ca, src, "datastore.etcd.ca"));
          if (e.cert !== undefined) set("etcdCert", absPath(e.cert, src, "datastore.etcd.cert"));
          if (e.key !== undefined) set("etcdKey", absPath(e.key, src, "datastore.etcd.key"));
          if (e.serverName !== undefined) {
            if (typeof e.serverName !== "string" || e.serverName === "") {
              fail(src, "datastore.etcd.serverName", e.serverName, "must be a host name");
            }
            set("etcdServerName", e.serverName as string);
          }
        }
        break;
      }
      case "kubernetes": {
        const o = object(v, src, k, ["enabled", "kubeconfig"]);
        if (o.enabled !== undefined) {
          const e = o.enabled === true ? "on" : o.enabled === false ? "off" : o.enabled;
          set(
            "kubernetesEnabled",
            oneOf(e, src, "kubernetes.enabled", ["auto", "on", "off"] as const),
          );
        }
        if (o.kubeconfig !== undefined) {
          set("kubeconfig", absPath(o.kubeconfig, src, "kubernetes.kubeconfig"));
        }
        break;
      }
      default: {
        const scalar = SCALARS[k];
        if (scalar) set(scalar.draft, scalar.parse(v, src, k) as never);
      }
    }
  }
  return d;
}

const NODE_IP_SOURCES = ["auto", "addresses", "interface", "default-route", "kubernetes"] as const;

function endpoints(v: unknown, src: string, key: string): string[] {
  const eps = list(v, src, key);
  if (eps.length === 0) fail(src, key, v, "must hold at least one endpoint");
  for (const e of eps) {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      return fail(src, key, e, "is not a URL (http://HOST:PORT or https://HOST:PORT)");
    }
    if ((u.protocol !== "http:" && u.protocol !== "https:") || !u.port || u.pathname.length > 1) {
      fail(src, key, e, "is not http(s)://HOST:PORT");
    }
  }
  return eps;
}

function conflistName(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\.conflist$/.test(s)) {
    fail(src, key, v, "must be a file name ending in .conflist");
  }
  return s;
}

function networkName(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  // The CNI spec's network name: alphanumerics, '_', '.', '-'.
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(s)) fail(src, key, v, "is not a valid CNI network name");
  return s;
}

function level(v: unknown, src: string, key: string): Level {
  const s = str(v, src, key);
  const l = parseLevel(s, "info");
  if (l !== s.toLowerCase()) fail(src, key, v, "must be one of debug, info, warn, error");
  return l;
}

function listenAddress(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  try {
    parseListenAddress(s);
  } catch {
    fail(src, key, v, "is not HOST:PORT (e.g. 127.0.0.1:9753, [::1]:9753, :9753)");
  }
  return s;
}

/** Environment and flags: the same keys, as strings. */
function fromStrings(values: [spec: FlagSpec, value: string, source: string][]): Draft {
  const d: Draft = {};
  const set = <K extends keyof Draft>(
    k: K,
    value: NonNullable<Draft[K]>["value"],
    source: string,
  ) => {
    (d as Record<string, Setting<unknown>>)[k] = { value, source };
  };
  for (const [spec, v, src] of values) {
    const key = spec.key;
    switch (spec.name) {
      case "config":
        break;
      case "nodeIp":
        set("nodeIPAddresses", nodeAddresses(v, src, key), src);
        break;
      case "nodeIpInterface":
        set("nodeIPInterface", ifname(v, src, key), src);
        break;
      case "nodeIpSource":
        set("nodeIPSource", oneOf(v, src, key, NODE_IP_SOURCES), src);
        break;
      case "pool":
        set("pools", pools(v, src, key), src);
        break;
      case "clusterCidr":
        set("clusterCIDRs", list(v, src, key).map((c) => formatCidr(cidr(c, src, key))), src);
        break;
      case "masquerade":
        set("masquerade", bool(v, src, key), src);
        break;
      case "datastore":
        set("datastoreType", oneOf(v, src, key, ["etcd", "local"] as const), src);
        break;
      case "etcdEndpoints":
        set("etcdEndpoints", endpoints(v, src, key), src);
        break;
      case "etcdCa":
        set("etcdCa", absPath(v, src, key), src);
        break;
      case "etcdCert":
        set("etcdCert", absPath(v, src, key), src);
        break;
      case "etcdKey":
        set("etcdKey", absPath(v, src, key), src);
        break;
      case "dataDir":
        set("dataDir", absPath(v, src, key), src);
        break;
      case "kubernetes":
        set("kubernetesEnabled", oneOf(v, src, key, ["auto", "on", "off"] as const), src);
        break;
      case "kubeconfig":
        set("kubeconfig", absPath(v, src, key), src);
        break;
      default: {
        const scalar = SCALARS[spec.name];
        if (scalar) set(scalar.draft, scalar.parse(v, src, key) as never, src);
      }
    }
  }
  return d;
}

export interface LoadOptions {
  /** Flags from the CLI (strings; undefined = not given). */
  flags?: DaemonFlags;
  /** The environment (default: the process's). */
  env?: (name: string) => string | undefined;
  /** The host name, for the node-name fallback (default: `Deno.hostname()`). */
  hostname?: () => string;
  /** The file read when neither `--config` nor `OHNO_CONFIG` names one (tests). */
  defaultFile?: string;
}

/**
 * Reads the file (the `--config` flag, else `OHNO_CONFIG`, else
 * {@link DEFAULT_CONFIG_FILE}, which may be absent), overlays the environment and the
 * flags, fills in derived defaults and validates the whole. Throws
 * {@link DaemonConfigError} naming the source, the key and the value.
 */
export function loadDaemonConfig(opts: LoadOptions = {}): DaemonConfig {
  const env = opts.env ?? ((k: string) => Deno.env.get(k));
  const flags = opts.flags ?? {};
  const explicit = flags.config ?? env("OHNO_CONFIG");
  const path = explicit ?? opts.defaultFile ?? DEFAULT_CONFIG_FILE;
  let fileDraft: Draft = {};
  let file: string | undefined;
  let text: string | undefined;
  try {
    text = Deno.readTextFileSync(path);
    file = path;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) || explicit !== undefined) {
      const src = flags.config !== undefined
        ? "--config"
        : explicit !== undefined
        ? "env OHNO_CONFIG"
        : "config";
      throw new DaemonConfigError(
        `${src}: cannot read ${path}: ${(e as Error).message}`,
        "(file)",
        src,
      );
    }
  }
  if (text !== undefined) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new DaemonConfigError(
        `${path}: not valid JSON: ${(e as Error).message}`,
        "(file)",
        path,
      );
    }
    fileDraft = fromFile(doc, path);
  }
  const envValues: [FlagSpec, string, string][] = [];
  const flagValues: [FlagSpec, string, string][] = [];
  for (const spec of DAEMON_FLAGS) {
    const e = spec.env ? env(spec.env) : undefined;
    if (spec.env && e !== undefined && e !== "") envValues.push([spec, e, `env ${spec.env}`]);
    const f = flags[spec.name];
    if (f !== undefined) flagValues.push([spec, f, `--${spec.flags.split(" ")[0]!.slice(2)}`]);
  }
  const d: Draft = { ...fileDraft, ...fromStrings(envValues), ...fromStrings(flagValues) };
  return finish(d, file, opts.hostname ?? (() => Deno.hostname()));
}

function finish(d: Draft, file: string | undefined, hostname: () => string): DaemonConfig {
  const nodeNameValue = d.nodeName?.value ?? (() => {
    const h = hostname().toLowerCase();
    return nodeName(h, "host name", "nodeName");
  })();

  const addresses = d.nodeIPAddresses?.value ?? [];
  const source: NodeIPSource = d.nodeIPSource?.value ??
    (d.nodeIPInterface ? "interface" : addresses.length ? "addresses" : "auto");
  if (source === "addresses" && addresses.length === 0) {
    fail(
      d.nodeIPSource?.source ?? "config",
      "nodeIP.source",
      source,
      "needs nodeIP.addresses (--node-ip)",
    );
  }
  if (source === "interface" && !d.nodeIPInterface) {
    fail(
      d.nodeIPSource?.source ?? "config",
      "nodeIP.source",
      source,
      "needs nodeIP.interface (--node-ip-interface)",
    );
  }

  const poolList = d.pools?.value ?? [];
  for (let i = 0; i < poolList.length; i++) {
    for (let j = i + 1; j < poolList.length; j++) {
      if (overlaps(parseCidr(poolList[i]!.cidr), parseCidr(poolList[j]!.cidr))) {
        fail(d.pools!.source, "pools", `${poolList[i]!.cidr} ${poolList[j]!.cidr}`, "overlap");
      }
    }
  }
  const cluster = d.clusterCIDRs?.value ?? poolList.map((p) => p.cidr);
  for (const p of poolList) {
    const pc = parseCidr(p.cidr);
    if (!cluster.some((c) => containsCidr(parseCidr(c), pc))) {
      fail(
        d.clusterCIDRs?.source ?? "config",
        "clusterCIDRs",
        cluster,
        `do not contain the pool ${p.cidr}`,
      );
    }
  }
  const mtuValue = d.mtu?.value ?? "auto";
  if (
    typeof mtuValue === "number" && mtuValue < 1280 && poolList.some((p) => p.cidr.includes(":"))
  ) {
    fail(d.mtu!.source, "mtu", mtuValue, "is below 1280, the IPv6 minimum, with an IPv6 pool");
  }

  const stateDir = d.stateDir?.value ?? "/var/lib/ohno";
  const runDir = d.runDir?.value ?? "/run/ohno";
  const type = d.datastoreType?.value ?? (d.etcdEndpoints ? "etcd" : "local");
  const datastore: DatastoreConfig = { type, dataDir: d.dataDir?.value ?? `${stateDir}/ipam` };
  if (type === "etcd") {
    if (!d.etcdEndpoints) {
      fail(
        d.datastoreType?.source ?? "config",
        "datastore.etcd.endpoints",
        null,
        "must be set when datastore.type is etcd (--etcd-endpoints)",
      );
    }
    if (!!d.etcdCert !== !!d.etcdKey) {
      const given = d.etcdCert ?? d.etcdKey!;
      fail(
        given.source,
        d.etcdCert ? "datastore.etcd.cert" : "datastore.etcd.key",
        given.value,
        "needs its pair: give both datastore.etcd.cert and datastore.etcd.key",
      );
    }
    datastore.etcd = {
      endpoints: d.etcdEndpoints.value,
      ...(d.etcdCa ? { ca: d.etcdCa.value } : {}),
      ...(d.etcdCert ? { cert: d.etcdCert.value } : {}),
      ...(d.etcdKey ? { key: d.etcdKey.value } : {}),
      ...(d.etcdServerName ? { serverName: d.etcdServerName.value } : {}),
    };
  }
  const kubernetes: DaemonConfig["kubernetes"] = {
    enabled: d.kubernetesEnabled?.value ?? "auto",
    ...(d.kubeconfig ? { kubeconfig: d.kubeconfig.value } : {}),
  };
  if (source === "kubernetes" && kubernetes.enabled === "off") {
    fail(
      d.nodeIPSource?.source ?? "config",
      "nodeIP.source",
      source,
      "needs Kubernetes, which kubernetes.enabled turns off",
    );
  }

  return {
    file,
    nodeName: nodeNameValue,
    nodeIP: {
      source,
      addresses,
      ...(d.nodeIPInterface ? { interface: d.nodeIPInterface.value } : {}),
    },
    backend: d.backend?.value ?? "host-gw",
    vxlan: {
      vni: d.vxlanVni?.value ?? 1,
      port: d.vxlanPort?.value ?? 8472,
      directRouting: d.vxlanDirectRouting?.value ?? false,
    },
    bgp: {
      ...(d.bgpAsNumber ? { asNumber: d.bgpAsNumber.value } : {}),
      ...(d.bgpRouterId ? { routerId: d.bgpRouterId.value } : {}),
      nodeMesh: d.bgpNodeMesh?.value ?? true,
      routeReflector: d.bgpRouteReflector?.value ?? false,
      peers: d.bgpPeers?.value ?? [],
      holdTime: d.bgpHoldTime?.value ?? 90,
      gracefulRestart: d.bgpGracefulRestart?.value ?? true,
    },
    mtu: mtuValue,
    pools: poolList,
    clusterCIDRs: cluster,
    masquerade: d.masquerade?.value ?? true,
    datastore,
    kubernetes,
    cniBinDir: d.cniBinDir?.value ?? "/opt/cni/bin",
    cniConfDir: d.cniConfDir?.value ?? "/etc/cni/net.d",
    conflistName: d.conflistName?.value ?? "10-ohno.conflist",
    networkName: d.networkName?.value ?? "ohno",
    bridge: d.bridge?.value ?? "ohno0",
    runDir,
    socket: d.socket?.value ?? `${runDir}/ipam.sock`,
    stateDir,
    logFile: d.logFile?.value ?? "/var/log/ohno/daemon.log",
    logLevel: d.logLevel?.value ?? "info",
    resyncPeriodMs: d.resyncPeriodMs?.value ?? 30_000,
    metricsAddress: d.metricsAddress?.value ?? "127.0.0.1:9753",
    cniLogFile: d.cniLogFile?.value ?? "/var/run/log/ohno.log",
    gcPeriodMs: d.gcPeriodMs?.value ?? 60_000,
    gcGracePeriodMs: d.gcGracePeriodMs?.value ?? 300_000,
  };
}
