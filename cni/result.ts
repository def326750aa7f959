/**
 * CNI results: one internal shape (the 1.1.0 superset), converted on the way out to the
 * version the plugin was called with, and parsed from any version on the way in
 * (`prevResult`).
 *
 * - 0.3.0, 0.3.1, 0.4.0: every `ips[]` entry carries `"version": "4"|"6"`;
 * - 1.0.0: no `version`;
 * - 1.1.0 only: interface `mtu`, `socketPath`, `pciID`; route `mtu`, `advmss`,
 *   `priority`, `table`, `scope`.
 * @module
 */

import { parseIpPrefix } from "../ipam/addr.ts";
import { CniCode, CniError } from "./errors.ts";
import { versionAtLeast } from "./versions.ts";

export interface Interface {
  name: string;
  mac?: string;
  /** Absent for host-side interfaces. */
  sandbox?: string;
  mtu?: number;
  socketPath?: string;
  pciID?: string;
}

export interface IpConfig {
  /** Address with prefix length. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`; absent in an IPAM plugin's result. */
  interface?: number;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface Result {
  interfaces?: Interface[];
  ips?: IpConfig[];
  routes?: Route[];
  dns?: Dns;
}

/** The route fields 1.1.0 added, all numbers. */
const ROUTE_V11_NUMBERS = {
  mtu: "number",
  advmss: "number",
  priority: "number",
  table: "number",
  scope: "number",
} as const;

function familyOf(address: string): "4" | "6" {
  return address.includes(":") ? "6" : "4";
}

function isEmptyDns(d: Dns | undefined): boolean {
  return !d || (!d.nameservers?.length && !d.domain && !d.search?.length && !d.options?.length);
}

/** The result document for `version`. */
export function formatResult(r: Result, version: string): Record<string, unknown> {
  const v11 = versionAtLeast(version, "1.1.0");
  const v10 = versionAtLeast(version, "1.0.0");
  const out: Record<string, unknown> = { cniVersion: version };
  if (r.interfaces?.length) {
    out.interfaces = r.interfaces.map((i) => {
      const o: Record<string, unknown> = { name: i.name };
      if (i.mac) o.mac = i.mac;
      if (v11 && i.mtu !== undefined) o.mtu = i.mtu;
      if (i.sandbox !== undefined) o.sandbox = i.sandbox;
      if (v11 && i.socketPath) o.socketPath = i.socketPath;
      if (v11 && i.pciID) o.pciID = i.pciID;
      return o;
    });
  }
  out.ips = (r.ips ?? []).map((ip) => {
    const o: Record<string, unknown> = {};
    if (!v10) o.version = familyOf(ip.address);
    if (ip.interface !== undefined) o.interface = ip.interface;
    o.address = ip.address;
    if (ip.gateway) o.gateway = ip.gateway;
    return o;
  });
  if (r.routes?.length) {
    out.routes = r.routes.map((rt) => {
      const o: Record<string, unknown> = { dst: rt.dst };
      if (rt.gw) o.gw = rt.gw;
      if (v11) {
        for (const k of Object.keys(ROUTE_V11_NUMBERS) as (keyof Route)[]) {
          if (rt[k] !== undefined) o[k] = rt[k];
        }
      }
      return o;
    });
  }
  if (!isEmptyDns(r.dns)) out.dns = r.dns;
  return out;
}

function fail(what: string): CniError {
  return new CniError(CniCode.DecodeFailure, `prevResult: ${what}`);
}

/** `d[key]`, a list, with each element parsed by `parse`; undefined when absent. */
function listOf<T>(
  d: Record<string, unknown>,
  key: string,
  parse: (x: Record<string, unknown>, n: number) => T,
): T[] | undefined {
  const v = d[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw fail(`${key} is not a list`);
  return v.map((item, n) => parse((item ?? {}) as Record<string, unknown>, n));
}

/**
 * Copies onto `o`, in order, each field of `x` whose value is of the type `fields` names
 * (`nonempty`: a string other than "").
 */
function copyFields<T extends object>(
  o: T,
  x: Record<string, unknown>,
  fields: { [K in keyof T]?: "string" | "nonempty" | "number" },
): T {
  for (const [k, type] of Object.entries(fields)) {
    const v = x[k];
    const ok = type === "number"
      ? typeof v === "number"
      : typeof v === "string" && (type === "string" || v !== "");
    if (ok) {
      (o as Record<string, unknown>)[k] = v;
    }
  }
  return o;
}

/** Parses a result of any supported version (a `prevResult`). */
export function parseResult(doc: unknown): Result {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw fail("is not an object");
  }
  const d = doc as Record<string, unknown>;
  const r: Result = {};
  const interfaces = listOf(d, "interfaces", (x, n) => {
    if (typeof x.name !== "string") throw fail(`interfaces[${n}] has no name`);
    return copyFields<Interface>({ name: x.name }, x, {
      mac: "string",
      sandbox: "string",
      mtu: "number",
      socketPath: "string",
      pciID: "string",
    });
  });
  if (interfaces) r.interfaces = interfaces;
  const ips = listOf(d, "ips", (x, n) => {
    if (typeof x.address !== "string") throw fail(`ips[${n}].address is missing`);
    try {
      parseIpPrefix(x.address);
    } catch {
      throw fail(`ips[${n}].address ${JSON.stringify(x.address)} is not ADDRESS/PREFIX`);
    }
    return copyFields<IpConfig>({ address: x.address }, x, {
      gateway: "nonempty",
      interface: "number",
    });
  });
  if (ips) r.ips = ips;
  const routes = listOf(d, "routes", (x, n) => {
    if (typeof x.dst !== "string") throw fail(`routes[${n}].dst is missing`);
    return copyFields<Route>({ dst: x.dst }, x, { gw: "nonempty", ...ROUTE_V11_NUMBERS });
  });
  if (routes) r.routes = routes;
  if (typeof d.dns === "object" && d.dns !== null) r.dns = d.dns as Dns;
  return r;
}

/** Appends `add` to `base`, renumbering `add`'s interface indices (chaining). */
export function mergeResults(base: Result, add: Result): Result {
  const offset = base.interfaces?.length ?? 0;
  return {
    interfaces: [...(base.interfaces ?? []), ...(add.interfaces ?? [])],
    ips: [
      ...(base.ips ?? []),
      ...(add.ips ?? []).map((ip) =>
        ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }
      ),
    ],
    routes: [...(base.routes ?? []), ...(add.routes ?? [])],
    ...(isEmptyDns(add.dns) ? (base.dns ? { dns: base.dns } : {}) : { dns: add.dns! }),
  };
}
