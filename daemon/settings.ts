/**
 * Every setting of the node agent, declared once: its key in the file, its flag, its
 * environment variable, its parser, its default and its doc line. daemon/config.ts reads
 * the layers (file, environment, flags) from this table, the `ohno daemon` command
 * registers its flags from it, the {@link DaemonConfig} type is derived from it, and
 * daemon/settings_test.ts checks docs/daemon.md's table of keys against it.
 * @module
 */

import {
  absPath,
  bgpPeers,
  bool,
  cidrList,
  conflistName,
  endpoints,
  holdTime,
  hostName,
  ifname,
  intIn,
  jsonBool,
  level,
  listenAddress,
  mtu,
  networkName,
  NODE_IP_SOURCES,
  nodeAddresses,
  nodeName,
  oneOf,
  type Parse,
  parseDuration,
  pools,
  routerId,
} from "./settings_parse.ts";

/** One setting. */
export interface SettingSpec {
  /** Its key in the file, dotted inside objects (`datastore.etcd.ca`). */
  readonly key: string;
  /**
   * Where it lands in {@link DaemonConfig} when that is not `key`; a `?` after a
   * group (`datastore.etcd?.ca`) makes the group optional.
   */
  readonly at?: string;
  /** The flag, in commander syntax (`--etcd-ca <file>`). */
  readonly flag?: string;
  /** The environment variable that sets it too. */
  readonly env?: string;
  /** Checks and converts a value: the file's JSON, or the text of a variable or flag. */
  readonly parse: Parse<unknown>;
  /** The file's parser, when the file is stricter than text (a JSON boolean). */
  readonly parseJson?: Parse<unknown>;
  /** The default, written as in the file (it is parsed like a value from the file). */
  readonly default?: unknown;
  /** The docs' words for a default that is not one value (daemon/config.ts derives it). */
  readonly defaultDoc?: string;
  /** No default: absent from the config unless given. */
  readonly optional?: true;
  /** Its line in docs/daemon.md (and in `ohno daemon --help`, without the backticks). */
  readonly doc: string;
}

function declareSettings<const T extends readonly SettingSpec[]>(settings: T): T {
  return settings;
}

/** Where the file is read from unless `--config` or `OHNO_CONFIG` say otherwise. */
export const DEFAULT_CONFIG_FILE = "/etc/ohno/ohno.json";

/** The file itself: a flag and a variable, no key (daemon/config.ts reads it first). */
export const CONFIG_SETTING = {
  flag: "--config <file>",
  env: "OHNO_CONFIG",
  default: DEFAULT_CONFIG_FILE,
  doc: "the configuration file",
} as const;

/**
 * The settings, in the order docs/daemon.md lists them.
 *
 * HOW TO ADD A SETTING: add one entry below, e.g.
 *
 *     { key: "bgp.asn", flag: "--bgp-asn <n>", parse: intIn(1, 4_294_967_295),
 *       default: 64512, doc: "bgp: this node's AS number" },
 *
 * (a parser from settings_parse.ts or your own; a `default` written as in the file, or
 * `optional: true`, or a `defaultDoc` when daemon/config.ts's `derive` computes it). From
 * it alone, the file accepts the key, `ohno daemon` gets the flag (and `env`, if given),
 * and DaemonConfig gets the typed field at `at ?? key` (`config.bgp.asn`). Then
 * regenerate docs/daemon.md's table (`./dev deno run -A daemon/settings_doc.ts && ./dev
 * deno fmt docs/daemon.md`; daemon/settings_test.ts fails until you do) and use the
 * field. A rule that spans settings goes in daemon/config.ts's `validate`.
 */
export const SETTINGS = declareSettings([
  {
    key: "nodeName",
    flag: "--node-name <name>",
    env: "NODE_NAME",
    parse: nodeName,
    defaultDoc: "the host name, lowercased",
    doc: "this node's name (the Kubernetes Node name)",
  },
  {
    key: "nodeIP.source",
    flag: "--node-ip-source <source>",
    parse: oneOf(NODE_IP_SOURCES),
    defaultDoc: "`auto`",
    doc:
      "`auto`, `addresses`, `interface`, `default-route`, `kubernetes` (docs/daemon.md: Node IP selection)",
  },
  {
    key: "nodeIP.addresses",
    flag: "--node-ip <addr[,addr]>",
    env: "NODE_IP",
    parse: nodeAddresses,
    defaultDoc: "–",
    doc: "at most one IPv4 and one IPv6 address; giving them implies `addresses`",
  },
  {
    key: "nodeIP.interface",
    flag: "--node-ip-interface <ifname>",
    parse: ifname,
    optional: true,
    doc: "take the addresses of this interface; giving it implies `interface`",
  },
  {
    key: "backend",
    flag: "--backend <type>",
    parse: oneOf(["host-gw", "vxlan", "bgp"] as const),
    default: "host-gw",
    doc: "routing backend: `host-gw`, `vxlan` or `bgp`",
  },
  {
    key: "vxlanVni",
    at: "vxlan.vni",
    flag: "--vxlan-vni <n>",
    parse: intIn(1, 16_777_215),
    default: 1,
    doc: "vxlan: the VXLAN network identifier, 1–16777215 (the same on every node)",
  },
  {
    key: "vxlanPort",
    at: "vxlan.port",
    flag: "--vxlan-port <port>",
    parse: intIn(1, 65535),
    default: 8472,
    doc:
      "vxlan: the UDP port (Linux's and flannel's default; IANA's is 4789), the same on every node",
  },
  {
    key: "vxlanDirectRouting",
    at: "vxlan.directRouting",
    flag: "--vxlan-direct-routing <on|off>",
    parse: bool,
    default: false,
    doc: "vxlan: host-gw routes to peers on this node's own subnet, VXLAN to the rest",
  },
  {
    key: "bgpAsNumber",
    at: "bgp.asNumber",
    flag: "--bgp-as-number <n>",
    parse: intIn(1, 4_294_967_294),
    optional: true,
    defaultDoc: "4200000000 + the low 26 bits of the node IP",
    doc: "bgp: this node's AS number, 1–4294967294; other nodes read it from the node's record",
  },
  {
    key: "bgpRouterId",
    at: "bgp.routerId",
    flag: "--bgp-router-id <ipv4>",
    parse: routerId,
    optional: true,
    defaultDoc: "the node's IPv4 address (IPv6-only: its low 32 bits)",
    doc: "bgp: the BGP router id, written as an IPv4 address",
  },
  {
    key: "bgpNodeMesh",
    at: "bgp.nodeMesh",
    flag: "--bgp-node-mesh <on|off>",
    parse: bool,
    default: true,
    doc: "bgp: a session with every other node; off: only route reflectors and `bgpPeers`",
  },
  {
    key: "bgpRouteReflector",
    at: "bgp.routeReflector",
    flag: "--bgp-route-reflector <on|off>",
    parse: bool,
    default: false,
    doc: "bgp: this node reflects routes to the others (with the mesh off; every node then " +
      "needs the same `bgpAsNumber`)",
  },
  {
    key: "bgpPeers",
    at: "bgp.peers",
    flag: "--bgp-peers <AS@ADDR,…>",
    parse: bgpPeers,
    default: [],
    doc: "bgp: peers outside the cluster (a top-of-rack router), per node: " +
      '`[{"address": "172.31.0.1", "asNumber": 65000, "password": "…"}]`; the password ' +
      "(TCP MD5) only in the file",
  },
  {
    key: "bgpHoldTime",
    at: "bgp.holdTime",
    flag: "--bgp-hold-time <duration>",
    parse: holdTime,
    default: "90s",
    doc: "bgp: hold time, whole seconds 3s–65535s; keepalives every third of it",
  },
  {
    key: "bgpGracefulRestart",
    at: "bgp.gracefulRestart",
    flag: "--bgp-graceful-restart <on|off>",
    parse: bool,
    default: true,
    doc: "bgp: graceful restart on the sessions and for BIRD's kernel routes",
  },
  {
    key: "mtu",
    flag: "--mtu <mtu|auto>",
    parse: mtu,
    default: "auto",
    doc: "pod MTU: a number 576–65535 (≥ 1280 with an IPv6 pool), or `auto` = the node " +
      "interface's MTU minus the backend's overhead (0 for host-gw)",
  },
  {
    key: "pools",
    flag: "--pool <cidr[:prefix],…>",
    parse: pools,
    default: [],
    doc: '`[{"cidr": "10.244.0.0/16", "blockPrefix": 24}]`; blockPrefix defaults to 24 (IPv4) ' +
      "/ 64 (IPv6); pools must not overlap",
  },
  {
    key: "clusterCIDRs",
    flag: "--cluster-cidr <cidr,…>",
    parse: cidrList,
    defaultDoc: "the pools' CIDRs",
    doc: "the pod address space; must contain every pool; masquerade exempts traffic inside it",
  },
  {
    key: "masquerade",
    flag: "--masquerade <on|off>",
    parse: bool,
    parseJson: jsonBool,
    default: true,
    doc: "SNAT pod traffic leaving the cluster CIDRs",
  },
  {
    key: "datastore.type",
    flag: "--datastore <etcd|local>",
    env: "OHNO_DATASTORE",
    parse: oneOf(["etcd", "local"] as const),
    defaultDoc: "`etcd` when endpoints are given, else `local`",
    doc: "where cluster IPAM state lives",
  },
  {
    key: "datastore.etcd.endpoints",
    at: "datastore.etcd?.endpoints",
    flag: "--etcd-endpoints <url,…>",
    env: "OHNO_ETCD_ENDPOINTS",
    parse: endpoints,
    doc: "`http(s)://HOST:PORT`; required for `etcd`",
  },
  {
    key: "datastore.etcd.ca",
    at: "datastore.etcd?.ca",
    flag: "--etcd-ca <file>",
    env: "OHNO_ETCD_CA",
    parse: absPath,
    optional: true,
    doc: "the CA certificate etcd's server certificate is checked with",
  },
  {
    key: "datastore.etcd.cert",
    at: "datastore.etcd?.cert",
    flag: "--etcd-cert <file>",
    env: "OHNO_ETCD_CERT",
    parse: absPath,
    optional: true,
    doc: "client certificate for etcd; goes with `datastore.etcd.key`",
  },
  {
    key: "datastore.etcd.key",
    at: "datastore.etcd?.key",
    flag: "--etcd-key <file>",
    env: "OHNO_ETCD_KEY",
    parse: absPath,
    optional: true,
    doc: "client key for etcd; goes with `datastore.etcd.cert`",
  },
  {
    key: "datastore.etcd.serverName",
    at: "datastore.etcd?.serverName",
    parse: hostName,
    optional: true,
    defaultDoc: "each endpoint's host (name or IP address)",
    doc: "the name or address etcd's server certificate is checked against: a host name " +
      "against its DNS names, an IP address against its IP addresses",
  },
  {
    key: "datastore.dataDir",
    flag: "--data-dir <dir>",
    env: "OHNO_DATA_DIR",
    parse: absPath,
    defaultDoc: "`STATE_DIR/ipam`",
    doc: "the local store's directory",
  },
  {
    key: "kubernetes.enabled",
    flag: "--kubernetes <auto|on|off>",
    parse: (v, src, key) =>
      oneOf(["auto", "on", "off"] as const)(v === true ? "on" : v === false ? "off" : v, src, key),
    default: "auto",
    doc: "`auto`: on in a pod (`KUBERNETES_SERVICE_HOST`) or with a kubeconfig; off " +
      "otherwise (`true`/`false` accepted in the file)",
  },
  {
    key: "kubernetes.kubeconfig",
    flag: "--kubeconfig <file>",
    env: "KUBECONFIG",
    parse: absPath,
    optional: true,
    doc: "a kubeconfig instead of the in-cluster service account",
  },
  {
    key: "cniBinDir",
    flag: "--cni-bin-dir <dir>",
    parse: absPath,
    default: "/opt/cni/bin",
    doc: "where the plugin binary is installed",
  },
  {
    key: "cniConfDir",
    flag: "--cni-conf-dir <dir>",
    parse: absPath,
    default: "/etc/cni/net.d",
    doc: "where the conflist is written",
  },
  {
    key: "conflistName",
    flag: "--conflist-name <name>",
    parse: conflistName,
    default: "10-ohno.conflist",
    doc: "the conflist's file name (sorts first, to win)",
  },
  {
    key: "networkName",
    flag: "--network-name <name>",
    parse: networkName,
    default: "ohno",
    doc: "the CNI network name",
  },
  {
    key: "bridge",
    flag: "--bridge <name>",
    parse: ifname,
    default: "ohno0",
    doc: "the pods' bridge",
  },
  {
    key: "runDir",
    flag: "--run-dir <dir>",
    parse: absPath,
    default: "/run/ohno",
    doc: "runtime directory (the socket)",
  },
  {
    key: "socket",
    flag: "--socket <path>",
    parse: absPath,
    defaultDoc: "`RUN_DIR/ipam.sock`",
    doc: "the IPAM socket (docs/ipam-socket.md)",
  },
  {
    key: "stateDir",
    flag: "--state-dir <dir>",
    parse: absPath,
    default: "/var/lib/ohno",
    doc: "persistent state",
  },
  {
    key: "logFile",
    flag: "--log-file <file>",
    env: "OHNO_LOG_FILE",
    parse: absPath,
    default: "/var/log/ohno/daemon.log",
    doc: "the agent's log (it also logs to stdout)",
  },
  {
    key: "logLevel",
    flag: "--log-level <level>",
    env: "OHNO_LOG_LEVEL",
    parse: level,
    default: "info",
    doc: "`debug`, `info`, `warn`, `error`",
  },
  {
    key: "resyncPeriod",
    at: "resyncPeriodMs",
    flag: "--resync-period <duration>",
    parse: parseDuration,
    default: "30s",
    doc: "full route reconcile period: `30s`, `500ms`, `2m`, `1h`, or seconds as a number " +
      "(100 ms – 24 h)",
  },
  {
    key: "metricsAddress",
    flag: "--metrics-address <host:port>",
    parse: listenAddress,
    default: "127.0.0.1:9753",
    doc: "`/healthz`, `/readyz`, `/metrics`: `HOST:PORT`, `[V6]:PORT`, `:PORT` (all addresses)",
  },
  {
    key: "cniLogFile",
    flag: "--cni-log-file <file>",
    parse: absPath,
    default: "/var/run/log/ohno.log",
    doc: "the plugin's log file, written into the conflist",
  },
  {
    key: "gcPeriod",
    at: "gcPeriodMs",
    flag: "--gc-period <duration>",
    parse: parseDuration,
    default: "60s",
    doc: "how often allocations of pods that are gone are looked for (Kubernetes on)",
  },
  {
    key: "allowLauncher",
    at: "allowLauncher",
    flag: "--allow-launcher <on|off>",
    env: "OHNO_ALLOW_LAUNCHER",
    parse: bool,
    parseJson: jsonBool,
    default: false,
    doc: "install the plugin even when this ohno is a development launcher script (runs only " +
      "where its checkout is: the lab); refused otherwise",
  },
  {
    key: "kubeWatchIdle",
    at: "kubeWatchIdleMs",
    flag: "--kube-watch-idle <duration>",
    parse: parseDuration,
    default: "120s",
    doc: "a Kubernetes watch that brings nothing (no event, no bookmark) for this long is " +
      "taken for a dead connection and started again",
  },
  {
    key: "gcGracePeriod",
    at: "gcGracePeriodMs",
    flag: "--gc-grace-period <duration>",
    parse: parseDuration,
    default: "5m",
    doc: "an allocation younger than this is never released by GC (its pod may not be listed yet)",
  },
]);

// ---- types derived from the table ----

type Setting = (typeof SETTINGS)[number];
type ValueOf<S> = S extends { parse: Parse<infer T> } ? T : never;
type AtOf<S> = S extends { at: infer P extends string } ? P
  : S extends { key: infer K extends string } ? K
  : never;
/** `a.b?.c` → `{a: {b?: {c: V}}}`; optional settings are optional leaves. */
type Nest<P extends string, V, Opt> = P extends `${infer H}.${infer R}`
  ? H extends `${infer G}?` ? { [_ in G]?: Nest<R, V, Opt> } : { [_ in H]: Nest<R, V, Opt> }
  : Opt extends true ? { [_ in P]?: V }
  : { [_ in P]: V };
type Each<S> = S extends Setting
  ? Nest<AtOf<S>, ValueOf<S>, S extends { optional: true } ? true : false>
  : never;
type Intersect<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I
  : never;
type Flat<T> = T extends readonly unknown[] ? T
  : T extends object ? { [K in keyof T]: Flat<T[K]> }
  : T;

/** The node agent's configuration: every setting at its place (`at ?? key`). */
export type DaemonConfig = Flat<
  {
    /** The file that was read, or undefined when none was (defaults only). */
    file: string | undefined;
  } & Intersect<Each<Setting>>
>;

type Camel<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<Camel<T>>}`
  : S;
type FlagProp<F> = F extends `--${infer N} ${string}` ? Camel<N>
  : F extends `--${infer N}` ? Camel<N>
  : never;
type FlagProps = Setting extends infer S ? S extends { flag: infer F } ? FlagProp<F> : never
  : never;

/** Flags as the CLI parser hands them over (all strings; commander's camelCase names). */
export type DaemonFlags = { [K in FlagProps | FlagProp<typeof CONFIG_SETTING.flag>]?: string };

/** A static default as written in the file (a string without quotes). */
export function defaultText(s: { default?: unknown }): string | undefined {
  return typeof s.default === "string" || s.default === undefined
    ? s.default
    : JSON.stringify(s.default);
}

/** The property commander fills for a flag (`--node-ip <a>` → `nodeIp`). */
export function flagProp(flag: string): string {
  return flag.split(" ")[0]!.slice(2).replace(/-(.)/g, (_, c: string) => c.toUpperCase());
}
