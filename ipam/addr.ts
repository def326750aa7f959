/**
 * Address math for IPv4 and IPv6 on npm:ipaddr.js, with addresses as bigints so that
 * large IPv6 prefixes (a /48 pool of /64 blocks, a /64 of 2^64 addresses) are handled
 * arithmetically and never enumerated.
 *
 * Parsing is strict: IPv4 only in four-part decimal (`10.1.2.3`, not `10.258` or hex),
 * prefixes in range, no zone ids.
 *
 * @example
 * ```ts
 * import { parseCidr, nthAddress, formatIp } from "./addr.ts";
 * const c = parseCidr("10.244.1.0/24");
 * formatIp(c.family, nthAddress(c, 1n)); // "10.244.1.1"
 * ```
 * @module
 */

import ipaddr from "ipaddr.js";

export type Family = 4 | 6;

/** A parsed address. */
export interface Ip {
  family: Family;
  value: bigint;
}

/** A parsed prefix, its address masked to the network (`10.1.2.0/24`). */
export interface Cidr {
  family: Family;
  /** The network address. */
  network: bigint;
  prefix: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

function bytesToBigint(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function bigintToBytes(v: bigint, len: number): number[] {
  const out = new Array<number>(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Four-part decimal without leading zeros: the common case, parsed without ipaddr.js. */
const V4 = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** Parses an address; throws RangeError naming the text when it is not one. */
export function parseIp(text: string): Ip {
  const s = text.trim();
  const m = V4.exec(s);
  if (m) {
    const [a, b, c, d] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
    if (a <= 255 && b <= 255 && c <= 255 && d <= 255) {
      return { family: 4, value: BigInt(((a << 24) | (b << 16) | (c << 8) | d) >>> 0) };
    }
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) {
    return { family: 4, value: bytesToBigint(ipaddr.IPv4.parse(s).toByteArray()) };
  }
  if (!s.includes("%") && ipaddr.IPv6.isValid(s)) {
    return { family: 6, value: bytesToBigint(ipaddr.IPv6.parse(s).toByteArray()) };
  }
  throw new RangeError(`${JSON.stringify(text)} is not an IP address`);
}

/** Whether `parse` takes `text` without throwing. */
function parses(parse: (text: string) => unknown, text: string): boolean {
  try {
    parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Whether `text` is an address (strict, as {@link parseIp}). */
export function isIp(text: string): boolean {
  return parses(parseIp, text);
}

/** Formats an address (IPv6 in RFC 5952 form). */
export function formatIp(family: Family, value: bigint): string {
  if (family === 4) return bigintToBytes(value, 4).join(".");
  const addr = ipaddr.fromByteArray(bigintToBytes(value, 16)) as ipaddr.IPv6;
  return addr.toRFC5952String();
}

/** Canonical text of an address (`fd00:0::1` → `fd00::1`). */
export function normalizeIp(text: string): string {
  const ip = parseIp(text);
  return formatIp(ip.family, ip.value);
}

export function mask(family: Family, prefix: number): bigint {
  const bits = BITS[family];
  return ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n);
}

/**
 * Parses `ADDR/PREFIX`. Host bits are cleared (`10.1.2.5/24` → `10.1.2.0/24`), as CNI's
 * reference plugins do; use {@link parseIpPrefix} to keep the address.
 */
export function parseCidr(text: string): Cidr {
  const { ip, prefix } = parseIpPrefix(text);
  return { family: ip.family, network: ip.value & mask(ip.family, prefix), prefix };
}

/** Parses `ADDR/PREFIX` keeping the address (an interface address like `10.1.2.5/24`). */
export function parseIpPrefix(text: string): { ip: Ip; prefix: number } {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m) throw new RangeError(`${JSON.stringify(text)} is not a CIDR (ADDRESS/PREFIX)`);
  let ip: Ip;
  try {
    ip = parseIp(m[1]!);
  } catch {
    throw new RangeError(`${JSON.stringify(text)} is not a CIDR: bad address`);
  }
  const prefix = Number(m[2]);
  if (prefix > BITS[ip.family]) {
    throw new RangeError(
      `${JSON.stringify(text)} is not a CIDR: prefix /${prefix} is longer than ${
        BITS[ip.family]
      } bits`,
    );
  }
  return { ip, prefix };
}

/** Whether `text` parses as a CIDR. */
export function isCidr(text: string): boolean {
  return parses(parseCidr, text);
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.network)}/${c.prefix}`;
}

/** Number of addresses in a prefix (2^(bits-prefix)). */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(BITS[c.family] - c.prefix);
}

/** The last address of a prefix (the IPv4 broadcast address). */
export function lastAddress(c: Cidr): bigint {
  return c.network + cidrSize(c) - 1n;
}

/** The n-th address of a prefix (0 = the network address). */
export function nthAddress(c: Cidr, n: bigint): bigint {
  if (n < 0n || n >= cidrSize(c)) {
    throw new RangeError(`offset ${n} is outside ${formatCidr(c)}`);
  }
  return c.network + n;
}

export function containsIp(c: Cidr, ip: Ip): boolean {
  return ip.family === c.family && (ip.value & mask(c.family, c.prefix)) === c.network;
}

export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.prefix >= outer.prefix &&
    (inner.network & mask(outer.family, outer.prefix)) === outer.network;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return containsCidr(a, b) || containsCidr(b, a);
}

/** How many sub-prefixes of length `prefix` fit in `c`. */
export function subnetCount(c: Cidr, prefix: number): bigint {
  if (prefix < c.prefix || prefix > BITS[c.family]) {
    throw new RangeError(`/${prefix} cannot divide ${formatCidr(c)}`);
  }
  return 1n << BigInt(prefix - c.prefix);
}

/** The `index`-th sub-prefix of length `prefix` in `c` (a pool's n-th block). */
export function nthSubnet(c: Cidr, prefix: number, index: bigint): Cidr {
  const count = subnetCount(c, prefix);
  if (index < 0n || index >= count) {
    throw new RangeError(
      `block ${index} is outside ${formatCidr(c)} (${count} blocks of /${prefix})`,
    );
  }
  return {
    family: c.family,
    network: c.network + (index << BigInt(BITS[c.family] - prefix)),
    prefix,
  };
}

/** Index of the sub-prefix of length `prefix` in `c` that holds `inner`'s network. */
export function subnetIndex(c: Cidr, prefix: number, inner: Cidr | Ip): bigint {
  const v = "network" in inner ? inner.network : inner.value;
  return (v - c.network) >> BigInt(BITS[c.family] - prefix);
}

/** A key-safe, sortable text of an address (for store keys). */
export function ipKey(ip: Ip): string {
  return formatIp(ip.family, ip.value);
}

/** A key-safe text of a prefix (`10.244.1.0-24`: no slash, so it is one key segment). */
export function cidrKey(c: Cidr): string {
  return `${formatIp(c.family, c.network)}-${c.prefix}`;
}

/** Inverse of {@link cidrKey}. */
export function parseCidrKey(key: string): Cidr {
  const i = key.lastIndexOf("-");
  return parseCidr(`${key.slice(0, i)}/${key.slice(i + 1)}`);
}
