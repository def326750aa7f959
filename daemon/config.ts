/**
 * The node agent's configuration: a JSON file (`/etc/ohno/ohno.json` by default), then
 * the environment, then flags, each overriding the one before; validated into one typed
 * {@link DaemonConfig}. Every host path is a setting, because the lab runs several agents
 * on one filesystem. The settings are declared once, in daemon/settings.ts (which says
 * how to add one); docs/daemon.md lists them.
 *
 * @example
 * ```ts ignore
 * // In the `ohno daemon` command (commander):
 * for (const f of DAEMON_FLAGS) cmd.option(f.flags, f.description);
 * const config = loadDaemonConfig({ flags: cmd.opts(), env: (k) => Deno.env.get(k) });
 * ```
 * @module
 */

import { containsCidr, overlaps, parseCidr } from "../ipam/addr.ts";
import {
  CONFIG_SETTING,
  type DaemonConfig,
  type DaemonFlags,
  DEFAULT_CONFIG_FILE,
  defaultText,
  flagProp,
  SETTINGS,
  type SettingSpec,
} from "./settings.ts";
import { DaemonConfigError, fail, nodeName, object } from "./settings_parse.ts";

export { DaemonConfigError, parseDuration } from "./settings_parse.ts";
export type { NodeIPSource, PoolConfig } from "./settings_parse.ts";
export { DEFAULT_CONFIG_FILE, SETTINGS } from "./settings.ts";
export type { DaemonConfig, DaemonFlags, SettingSpec } from "./settings.ts";

export type NodeIPConfig = DaemonConfig["nodeIP"];
/** The datastore, in the shape `ohno ipam` documents in docs/cli.md. */
export type DatastoreConfig = DaemonConfig["datastore"];

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

/** The table, as the loader reads it. */
const SPECS: readonly SettingSpec[] = SETTINGS;
type Flagged = Omit<SettingSpec, "key" | "parse"> & { flag: string; key?: string };
const FLAGGED: readonly Flagged[] = [
  CONFIG_SETTING,
  ...SPECS.filter((s): s is SettingSpec & Flagged => s.flag !== undefined),
];

/** Every flag of `ohno daemon` with the key it sets (register them in the CLI in a loop). */
export const DAEMON_FLAGS: readonly FlagSpec[] = FLAGGED.map((s) => {
  const dflt = defaultText(s) ?? s.defaultDoc;
  return {
    flags: s.flag,
    description: `${s.doc}${dflt && dflt !== "–" ? ` (default ${dflt})` : ""}`.replaceAll("`", ""),
    name: flagProp(s.flag) as keyof DaemonFlags,
    key: s.key ?? "(file)",
    ...(s.env ? { env: s.env } : {}),
  };
});

/** A value that was given, and where. */
interface Given {
  value: unknown;
  source: string;
}

/** The layers, each overriding the one before: file, environment, flags. */
function overlay(
  doc: unknown,
  file: string | undefined,
  env: (name: string) => string | undefined,
  flags: DaemonFlags,
): Map<SettingSpec, Given> {
  const given = new Map<SettingSpec, Given>();
  const take = (s: SettingSpec, v: unknown, source: string, parse = s.parse) =>
    given.set(s, { value: parse(v, source, s.key), source });
  const readObject = (v: unknown, src: string, prefix: string) => {
    const inside = prefix ? `${prefix}.` : "";
    const names = SPECS.filter((s) => s.key.startsWith(inside))
      .map((s) => s.key.slice(inside.length).split(".")[0]!);
    for (const [name, x] of Object.entries(object(v, src, prefix, [...new Set(names)]))) {
      const key = prefix ? `${prefix}.${name}` : name;
      const s = SPECS.find((s) => s.key === key);
      if (s) take(s, x, src, s.parseJson ?? s.parse);
      else readObject(x, src, key);
    }
  };
  if (file !== undefined) readObject(doc, file, "");
  for (const s of SPECS) {
    const e = s.env ? env(s.env) : undefined;
    if (e !== undefined && e !== "") take(s, e, `env ${s.env}`);
  }
  for (const s of SPECS) {
    const f = s.flag ? flags[flagProp(s.flag) as keyof DaemonFlags] : undefined;
    if (f !== undefined) take(s, f, s.flag!.split(" ")[0]!);
  }
  return given;
}

/** Puts each setting given or defaulted at its place (`at ?? key`); groups always exist. */
function assemble(given: Map<SettingSpec, Given>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of SPECS) {
    const path = (s.at ?? s.key).split(".");
    const leaf = path.pop()!;
    let value = given.get(s)?.value;
    if (value === undefined && s.default !== undefined) {
      value = (s.parseJson ?? s.parse)(s.default, "default", s.key);
    }
    let o = out;
    for (const part of path) {
      const name = part.replace(/\?$/, "");
      if (part.endsWith("?") && value === undefined) break;
      o = (o[name] ??= {}) as Record<string, unknown>;
    }
    if (value !== undefined) o[leaf] = value;
  }
  return out;
}

/** Fills the defaults that follow from other settings (the table's `defaultDoc`). */
function derive(c: DaemonConfig, hostname: () => string): void {
  c.nodeName ??= nodeName(hostname().toLowerCase(), "host name", "nodeName");
  const ip = c.nodeIP;
  ip.addresses ??= [];
  ip.source ??= ip.interface ? "interface" : ip.addresses.length ? "addresses" : "auto";
  c.clusterCIDRs ??= c.pools.map((p) => p.cidr);
  const ds = c.datastore;
  ds.type ??= ds.etcd?.endpoints ? "etcd" : "local";
  ds.dataDir ??= `${c.stateDir}/ipam`;
  if (ds.type === "local") delete ds.etcd;
  c.socket ??= `${c.runDir}/ipam.sock`;
}

/**
 * The rules that span settings. Pure: throws a {@link DaemonConfigError} naming the
 * first broken rule, with `sourceOf(key)` (the file, `env NAME`, `--flag`, or `config`
 * for a default) as the source.
 */
export function validate(c: DaemonConfig, sourceOf: (key: string) => string): void {
  const refuse = (key: string, value: unknown, why: string): never =>
    fail(sourceOf(key), key, value, why);
  const source = c.nodeIP.source;
  if (source === "addresses" && c.nodeIP.addresses.length === 0) {
    refuse("nodeIP.source", source, "needs nodeIP.addresses (--node-ip)");
  }
  if (source === "interface" && !c.nodeIP.interface) {
    refuse("nodeIP.source", source, "needs nodeIP.interface (--node-ip-interface)");
  }
  const pools = c.pools.map((p) => ({ ...p, net: parseCidr(p.cidr) }));
  pools.forEach((p, i) => {
    const q = pools.slice(i + 1).find((q) => overlaps(p.net, q.net));
    if (q) refuse("pools", `${p.cidr} ${q.cidr}`, "overlap");
  });
  const cluster = c.clusterCIDRs.map(parseCidr);
  for (const p of pools) {
    if (!cluster.some((n) => containsCidr(n, p.net))) {
      refuse("clusterCIDRs", c.clusterCIDRs, `do not contain the pool ${p.cidr}`);
    }
  }
  if (typeof c.mtu === "number" && c.mtu < 1280 && pools.some((p) => p.net.family === 6)) {
    refuse("mtu", c.mtu, "is below 1280, the IPv6 minimum, with an IPv6 pool");
  }
  const etcd = c.datastore.etcd;
  if (c.datastore.type === "etcd") {
    if (!etcd?.endpoints) {
      fail(
        sourceOf("datastore.type"),
        "datastore.etcd.endpoints",
        null,
        "must be set when datastore.type is etcd (--etcd-endpoints)",
      );
    }
    if (!!etcd.cert !== !!etcd.key) {
      const key = etcd.cert ? "datastore.etcd.cert" : "datastore.etcd.key";
      refuse(
        key,
        etcd.cert ?? etcd.key,
        "needs its pair: give both datastore.etcd.cert and datastore.etcd.key",
      );
    }
  }
  if (source === "kubernetes" && c.kubernetes.enabled === "off") {
    refuse("nodeIP.source", source, "needs Kubernetes, which kubernetes.enabled turns off");
  }
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
  const { file, doc } = readFile(flags.config, env(CONFIG_SETTING.env), opts.defaultFile);
  const given = overlay(doc, file, env, flags);
  const config = { file, ...assemble(given) } as DaemonConfig;
  derive(config, opts.hostname ?? (() => Deno.hostname()));
  const sources = new Map([...given].map(([s, g]) => [s.key, g.source]));
  validate(config, (key) => sources.get(key) ?? "config");
  return config;
}

/** The file named by the flag, else the variable, else the default (which may be absent). */
function readFile(
  flag: string | undefined,
  variable: string | undefined,
  defaultFile = DEFAULT_CONFIG_FILE,
): { file?: string; doc?: unknown } {
  const explicit = flag ?? variable;
  const path = explicit ?? defaultFile;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && explicit === undefined) return {};
    const src = flag !== undefined
      ? "--config"
      : variable !== undefined
      ? `env ${CONFIG_SETTING.env}`
      : "config";
    throw new DaemonConfigError(
      `${src}: cannot read ${path}: ${(e as Error).message}`,
      "(file)",
      src,
    );
  }
  try {
    return { file: path, doc: JSON.parse(text) };
  } catch (e) {
    throw new DaemonConfigError(`${path}: not valid JSON: ${(e as Error).message}`, "(file)", path);
  }
}
