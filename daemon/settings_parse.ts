/**
 * The node agent's value parsers (daemon/settings.ts names one per setting): each takes
 * a value from the file (JSON) or from the environment or a flag (a string), and returns
 * it typed and canonical, or throws a {@link DaemonConfigError} that names where the value
 * came from, the key and the value. No I/O.
 * @module
 */

import { type Cidr, formatCidr, normalizeIp, parseCidr, parseIp } from "../ipam/addr.ts";
import { type Level, parseLevel } from "../lib/log.ts";

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

/** Throws the error every refusal uses: `SOURCE: KEY VALUE WHY`. */
export function fail(source: string, key: string, value: unknown, why: string): never {
  throw new DaemonConfigError(`${source}: ${key} ${JSON.stringify(value)} ${why}`, key, source);
}

/** A value parser: the value, where it came from, its key. */
export type Parse<T> = (v: unknown, src: string, key: string) => T;

/** How the node's own address is found. */
export type NodeIPSource = "auto" | "addresses" | "interface" | "default-route" | "kubernetes";
export const NODE_IP_SOURCES: readonly NodeIPSource[] = [
  "auto",
  "addresses",
  "interface",
  "default-route",
  "kubernetes",
];

export interface PoolConfig {
  /** Canonical CIDR. */
  cidr: string;
  /** Prefix length of one node block (default 24 for IPv4, 64 for IPv6). */
  blockPrefix: number;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IFNAME = /^[^\s/:]{1,15}$/;

export function str(v: unknown, src: string, key: string): string {
  if (typeof v !== "string" || v === "") fail(src, key, v, "must be a non-empty string");
  return v;
}

/** A string matching `re`, else refused with `why`. */
function matching(re: RegExp, why: string): Parse<string> {
  return (v, src, key) => {
    const s = str(v, src, key);
    if (!re.test(s)) fail(src, key, v, why);
    return s;
  };
}

export function absPath(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  if (!s.startsWith("/")) fail(src, key, v, "must be an absolute path");
  if (s.includes("\0")) fail(src, key, v, "must not contain NUL");
  return s.length > 1 ? s.replace(/\/+$/, "") : s;
}

/** A list: a JSON array of strings, or a comma-separated string. */
export function list(v: unknown, src: string, key: string): string[] {
  if (typeof v === "string") return v.split(",").map((x) => x.trim()).filter(Boolean);
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
    fail(src, key, v, "must be a list of strings");
  }
  return v as string[];
}

export function nodeName(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  if (s.length > 253 || !DNS_SUBDOMAIN.test(s)) {
    fail(src, key, v, "is not a valid node name (lowercase letters, digits, '-' and '.')");
  }
  return s;
}

export const ifname: Parse<string> = matching(
  IFNAME,
  "is not an interface name (1-15 characters, no blanks, '/' or ':')",
);

export const conflistName: Parse<string> = matching(
  /^[A-Za-z0-9][A-Za-z0-9._-]*\.conflist$/,
  "must be a file name ending in .conflist",
);

/** The CNI spec's network name: alphanumerics, '_', '.', '-'. */
export const networkName: Parse<string> = matching(
  /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/,
  "is not a valid CNI network name",
);

/** A host name (etcd's server certificate name). */
export function hostName(v: unknown, src: string, key: string): string {
  if (typeof v !== "string" || v === "") fail(src, key, v, "must be a host name");
  return v;
}

export function oneOf<T extends string>(options: readonly T[]): Parse<T> {
  return (v, src, key) => {
    if (typeof v !== "string" || !options.includes(v as T)) {
      fail(src, key, v, `must be one of ${options.join(", ")}`);
    }
    return v as T;
  };
}

/** `true`/`false`, or from text also on/off, yes/no, 1/0. */
export function bool(v: unknown, src: string, key: string): boolean {
  if (typeof v === "boolean") return v;
  if (typeof v === "string") {
    const s = v.toLowerCase();
    if (["on", "true", "yes", "1"].includes(s)) return true;
    if (["off", "false", "no", "0"].includes(s)) return false;
  }
  return fail(src, key, v, "must be true or false (on/off)");
}

/** Only a JSON boolean (the file's form). */
export function jsonBool(v: unknown, src: string, key: string): boolean {
  if (typeof v !== "boolean") fail(src, key, v, "must be true or false");
  return v;
}

export function nodeAddresses(v: unknown, src: string, key: string): string[] {
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

/** Canonical CIDRs; a JSON array's items are named `KEY[i]`. */
export function cidrList(v: unknown, src: string, key: string): string[] {
  const named = Array.isArray(v);
  return list(v, src, key).map((c, i) => formatCidr(cidr(c, src, named ? `${key}[${i}]` : key)));
}

/** A whole number min-max (a JSON number or digits). */
function whole(v: unknown, min: number, max: number): number | undefined {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

export function intIn(min: number, max: number): Parse<number> {
  return (v, src, key) =>
    whole(v, min, max) ?? fail(src, key, v, `must be a whole number ${min}-${max}`);
}

export function mtu(v: unknown, src: string, key: string): number | "auto" {
  if (v === "auto") return v;
  return whole(v, 576, 65535) ?? fail(src, key, v, 'must be "auto" or a whole number 576-65535');
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

type Json = Record<string, unknown>;

export function pools(v: unknown, src: string, key: string): PoolConfig[] {
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

/** A JSON object holding only `keys` (a typo is refused, naming the known keys). */
export function object(v: unknown, src: string, key: string, keys: readonly string[]): Json {
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

export function endpoints(v: unknown, src: string, key: string): string[] {
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

export function level(v: unknown, src: string, key: string): Level {
  const s = str(v, src, key);
  const l = parseLevel(s, "info");
  if (l !== s.toLowerCase()) fail(src, key, v, "must be one of debug, info, warn, error");
  return l;
}

/** Parses `HOST:PORT`, `[V6]:PORT` or `:PORT` (all addresses). */
export function parseListenAddress(text: string): { hostname: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new RangeError(
      `${JSON.stringify(text)} is not HOST:PORT (e.g. 127.0.0.1:9753, [::1]:9753, :9753)`,
    );
  }
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port };
}

export function listenAddress(v: unknown, src: string, key: string): string {
  const s = str(v, src, key);
  try {
    parseListenAddress(s);
  } catch {
    fail(src, key, v, "is not HOST:PORT (e.g. 127.0.0.1:9753, [::1]:9753, :9753)");
  }
  return s;
}

/** A BGP router id: written as an IPv4 address. */
export function routerId(v: unknown, src: string, key: string): string {
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

/** A BGP hold time: whole seconds, 3–65535 (a duration, returned in seconds). */
export function holdTime(v: unknown, src: string, key: string): number {
  const ms = parseDuration(v, src, key);
  if (ms < 3000 || ms > 65_535_000 || ms % 1000) {
    fail(src, key, v, "must be whole seconds, 3s-65535s (BGP's hold time)");
  }
  return ms / 1000;
}

/** A BGP peer outside the cluster (a top-of-rack router). */
export interface BgpPeerConfig {
  /** Canonical address. */
  address: string;
  asNumber: number;
  password?: string;
}

/** File: `[{address, asNumber, password?}, …]`; flag and environment: `AS@ADDRESS,…`. */
export function bgpPeers(v: unknown, src: string, key: string): BgpPeerConfig[] {
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
  const asNumber = intIn(1, 4_294_967_294);
  return items.map((p, i) => {
    const k = typeof v === "string" ? key : `${key}[${i}]`;
    let address: string;
    try {
      address = normalizeIp(str(p.address, src, `${k}.address`));
    } catch (e) {
      if (e instanceof DaemonConfigError) throw e;
      return fail(src, `${k}.address`, p.address, "is not an IP address");
    }
    const as = asNumber(p.asNumber, src, `${k}.asNumber`);
    if (p.password === undefined) return { address, asNumber: as };
    const pw = str(p.password, src, `${k}.password`);
    if ([...pw].some((c) => c === '"' || c === "\\" || c.charCodeAt(0) < 32) || pw.length > 80) {
      fail(
        src,
        `${k}.password`,
        "(hidden)",
        'must be 1-80 characters without ", \\ or control characters',
      );
    }
    return { address, asNumber: as, password: pw };
  });
}
