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
        for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) {
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

/** Parses a result of any supported version (a `prevResult`). */
export function parseResult(doc: unknown): Result {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw fail("is not an object");
  }
  const d = doc as Record<string, unknown>;
  const r: Result = {};
  if (d.interfaces !== undefined) {
    if (!Array.isArray(d.interfaces)) throw fail("interfaces is not a list");
    r.interfaces = d.interfaces.map((i, n) => {
      if (typeof i !== "object" || i === null || typeof (i as Interface).name !== "string") {
        throw fail(`interfaces[${n}] has no name`);
      }
      const x = i as Record<string, unknown>;
      const o: Interface = { name: x.name as string };
      if (typeof x.mac === "string") o.mac = x.mac;
      if (typeof x.sandbox === "string") o.sandbox = x.sandbox;
      if (typeof x.mtu === "number") o.mtu = x.mtu;
      if (typeof x.socketPath === "string") o.socketPath = x.socketPath;
      if (typeof x.pciID === "string") o.pciID = x.pciID;
      return o;
    });
  }
  if (d.ips !== undefined) {
    if (!Array.isArray(d.ips)) throw fail("ips is not a list");
    r.ips = d.ips.map((ip, n) => {
      const x = (ip ?? {}) as Record<string, unknown>;
      if (typeof x.address !== "string") throw fail(`ips[${n}].address is missing`);
      try {
        parseIpPrefix(x.address);
      } catch {
        throw fail(`ips[${n}].address ${JSON.stringify(x.address)} is not ADDRESS/PREFIX`);
      }
      const o: IpConfig = { address: x.address };
      if (typeof x.gateway === "string" && x.gateway !== "") o.gateway = x.gateway;
      if (typeof x.interface === "number") o.interface = x.interface;
      return o;
    });
  }
  if (d.routes !== undefined) {
    if (!Array.isArray(d.routes)) throw fail("routes is not a list");
    r.routes = d.routes.map((rt, n) => {
      const x = (rt ?? {}) as Record<string, unknown>;
      if (typeof x.dst !== "string") throw fail(`routes[${n}].dst is missing`);
      const o: Route = { dst: x.dst };
      if (typeof x.gw === "string" && x.gw !== "") o.gw = x.gw;
      for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) {
        if (typeof x[k] === "number") o[k] = x[k] as number;
      }
      return o;
    });
  }
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
