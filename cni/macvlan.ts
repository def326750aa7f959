/**
 * macvlan and ipvlan modes: the pod's interface is a slave of the node's uplink (the
 * `master`), created by one `ip -batch` in the host namespace straight into the pod's
 * namespace under its CNI_IFNAME; the pod side (addresses, routes) is bridge mode's
 * {@link setupPod}. No veth, no bridge, no gateway address on the host: the pod's default
 * route goes to IPAM's gateway on the master's network.
 *
 * Optional host shim: a slave of the master in the host namespace (macvlan bridge mode,
 * ipvlan in the network's mode) holding the node's address, with a route to each pod
 * subnet through it, so the node reaches its own pods (a slave cannot talk to its
 * master directly).
 *
 * The decisions (master, MTU, does the shim exist) come from procfs and one ioctl, no
 * process; the planning functions are pure and unit-tested.
 * @module
 */

import { formatCidr, parseCidr } from "../ipam/addr.ts";
import { IpExistsError } from "../netns/errors.ts";
import { IpBatch } from "../netns/ip.ts";
import { defaultRouteInterface, linkDriver, linkMtu, linkNames } from "../netns/links.ts";
import type { Netns } from "../netns/netns.ts";
import type { SlaveConf } from "./config.ts";
import { CniCode, CniError } from "./errors.ts";
import { fnv1a64 } from "./names.ts";

/** Drivers of links that are themselves slaves of another link (never a master). */
const SLAVE_DRIVERS = new Set(["macvlan", "macvtap", "ipvlan", "ipvtap"]);

export interface SlavePlan {
  kind: "macvlan" | "ipvlan";
  master: string;
  linkMode: string;
  ifname: string;
  /** The pod namespace path (CNI_NETNS). */
  podNetns: string;
  mtu: number;
  podMac?: string | undefined;
}

/**
 * The host-side commands: the slave created in the pod's namespace under its final name
 * (so no name in the host namespace is ever taken), then nothing else: the pod side
 * reads it back. Every name follows its keyword.
 */
export function slaveCommands(p: SlavePlan): string[][] {
  return [[
    "link",
    "add",
    "name",
    p.ifname,
    "link",
    p.master,
    "mtu",
    String(p.mtu),
    ...(p.podMac ? ["address", p.podMac] : []),
    "netns",
    p.podNetns,
    "type",
    p.kind,
    "mode",
    p.linkMode,
  ]];
}

/** The shim's name: `shim` + 11 hex digits of FNV-1a 64 of `kind:master` (15 characters). */
export function shimName(kind: string, master: string): string {
  return "shim" + fnv1a64(`${kind}:${master}`).toString(16).padStart(16, "0").slice(0, 11);
}

export interface ShimPlan {
  kind: "macvlan" | "ipvlan";
  name: string;
  master: string;
  linkMode: string;
  /** Create the shim (it is missing). */
  create: boolean;
  /** The node's addresses (`ADDR/32`, `ADDR/128`) the shim holds. */
  nodeAddrs: string[];
  /** Pod subnets routed through the shim. */
  subnets: string[];
}

/** The shim's commands: create it once, then (every ADD) make sure the pod subnets route through it. */
export function shimCommands(p: ShimPlan): string[][] {
  const c: string[][] = [];
  if (p.create) {
    c.push([
      "link",
      "add",
      "name",
      p.name,
      "link",
      p.master,
      "type",
      p.kind,
      "mode",
      p.kind === "macvlan" ? "bridge" : p.linkMode,
    ]);
    for (const a of p.nodeAddrs) {
      c.push([
        "addr",
        "replace",
        a,
        "dev",
        p.name,
        "noprefixroute",
        ...(a.includes(":") ? ["nodad"] : []),
      ]);
    }
    c.push(["link", "set", "dev", p.name, "up"]);
  }
  for (const s of p.subnets) c.push(["route", "replace", s, "dev", p.name]);
  return c;
}

/** A single address as a host prefix (`10.0.0.1/32`, `fd00::1/128`). */
export function hostCidr(ip: string): string {
  return `${ip}/${ip.includes(":") ? 128 : 32}`;
}

/**
 * The pod's on-link routes to the node's addresses (the shim answers for them), for the
 * families the pod has.
 */
export function shimPodRoutes(nodeAddrs: string[], families: (4 | 6)[]): { dst: string }[] {
  return nodeAddrs.filter((a) => families.includes(a.includes(":") ? 6 : 4)).map((a) => ({
    dst: hostCidr(a),
  }));
}

/** The pod subnets of `ADDRESS/PREFIX`es (`10.5.0.7/24` → `10.5.0.0/24`). */
export function subnetsOf(cidrs: string[]): string[] {
  return [...new Set(cidrs.map((c) => formatCidr(parseCidr(c))))];
}

function bad(field: string, value: unknown, why: string): CniError {
  return new CniError(
    CniCode.InvalidConfig,
    `invalid network config: ${field} ${JSON.stringify(value)} ${why}`,
  );
}

export interface MasterInfo {
  name: string;
  mtu: number;
}

/**
 * The master the config names (or the default-route interface), checked before anything
 * is touched: it exists, it is not itself a macvlan/ipvlan slave, and `mtu` is not above
 * its MTU. Error 7 naming the field otherwise. One procfs read and two ioctls.
 */
export function resolveMaster(slave: SlaveConf, mtu: number | undefined, host?: Netns): MasterInfo {
  const opts = { netns: host };
  const name = slave.master ?? defaultRouteInterface(opts);
  const field = slave.master ? "master" : "master (the default-route interface)";
  if (name === undefined) {
    throw new CniError(
      CniCode.InvalidConfig,
      "invalid network config: master is not set and the node has no default route to take it from",
    );
  }
  const masterMtu = linkMtu(name, opts);
  if (masterMtu === undefined) throw bad(field, name, "does not exist in the node's namespace");
  const driver = linkDriver(name, opts);
  if (driver === undefined) throw bad(field, name, "does not exist in the node's namespace");
  if (SLAVE_DRIVERS.has(driver)) {
    throw bad(field, name, `is itself a ${driver} slave; name its parent link instead`);
  }
  if (mtu !== undefined && mtu > masterMtu) {
    throw bad("mtu", mtu, `is above the MTU of master ${JSON.stringify(name)} (${masterMtu})`);
  }
  return { name, mtu: masterMtu };
}

function batchOf(commands: string[][]): IpBatch {
  const b = new IpBatch();
  for (const c of commands) b.add(...c);
  return b;
}

/**
 * Creates the pod's slave in its namespace, then runs `more` (host-side commands) in the
 * same `ip` process; error 101 when the pod already has the name.
 */
export async function createSlave(
  p: SlavePlan,
  more: string[][] = [],
  host?: Netns,
): Promise<void> {
  try {
    await batchOf([...slaveCommands(p), ...more]).run({ netns: host });
  } catch (e) {
    if (e instanceof IpExistsError && e.command.startsWith("link add ")) {
      throw new CniError(
        CniCode.AttachmentExists,
        `interface ${p.ifname} already exists in ${p.podNetns}`,
        e.stderr,
      );
    }
    throw e;
  }
}

/**
 * Error 7 when a pod subnet is routed through a link other than the shim already:
 * `route replace` would take that route (typically the master's own subnet) away.
 * A procfs read; called before any link is touched.
 */
export function checkShimRoutes(
  kind: "macvlan" | "ipvlan",
  master: string,
  subnets: string[],
  host?: Netns,
): void {
  const name = shimName(kind, master);
  for (const s of subnets) {
    const dev = ipv4RouteDev(s, host);
    if (dev !== undefined && dev !== name) {
      throw bad(
        "hostShim",
        true,
        `cannot route pod subnet ${s} through the shim: the node routes it through ${dev} already`,
      );
    }
  }
}

/**
 * Routes the pod subnets through the shim, creating the shim first when it is missing,
 * holding the node's addresses. Call {@link checkShimRoutes} first.
 */
export async function ensureShim(
  kind: "macvlan" | "ipvlan",
  master: string,
  linkMode: string,
  subnets: string[],
  nodeAddrs: string[],
  host?: Netns,
): Promise<string> {
  const name = shimName(kind, master);
  const create = !linkNames({ netns: host }).includes(name);
  const plan: ShimPlan = {
    kind,
    name,
    master,
    linkMode,
    create,
    nodeAddrs: nodeAddrs.map(hostCidr),
    subnets,
  };
  try {
    await batchOf(shimCommands(plan)).run({ netns: host });
  } catch (e) {
    if (!(create && e instanceof IpExistsError)) throw e;
    // a concurrent ADD made the shim: only the routes are left to do
    await batchOf(shimCommands({ ...plan, create: false })).run({ netns: host });
  }
  return name;
}

/** The link an IPv4 route to exactly `subnet` uses (`/proc/thread-self/net/route`). */
export function ipv4RouteDev(subnet: string, host?: Netns): string | undefined {
  const c = parseCidr(subnet);
  if (c.family !== 4) return undefined;
  const read = () => Deno.readTextFileSync("/proc/thread-self/net/route");
  const text = host ? host.run(read) : read();
  // procfs prints the network-order word as a little-endian number: bytes reversed
  const hex = (v: bigint) => {
    let r = 0n;
    for (let i = 0; i < 4; i++) r = (r << 8n) | ((v >> BigInt(8 * i)) & 0xffn);
    return r.toString(16).padStart(8, "0").toUpperCase();
  };
  const mask = c.prefix === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - c.prefix)) - 1n);
  const dst = hex(c.network);
  const msk = hex(mask);
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[1] === dst && f[7] === msk) return f[0];
  }
  return undefined;
}
