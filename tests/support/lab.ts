/**
 * Labs for tests: `await using lab = await testLab({nodes: 3})` builds a lab with a
 * unique name through the same code `ohno lab` runs (agents are dist/ohno) and takes it
 * down even when the test fails.
 * @module
 */

import * as labs from "../../lab/lab.ts";
import { labOpen } from "../../lab/topology.ts";
import { Netns, runCommand } from "../../netns/netns.ts";
import { OHNO } from "./ohno.ts";

let n = 0;
/** Test files run as workers of one process (same pid): each module load gets its own token. */
const token = crypto.randomUUID().slice(0, 4); // hex

export interface TestLab extends AsyncDisposable {
  name: string;
  state(): labs.LabState;
  /** A node's namespace (open while the lab lives). */
  node(name: string): Netns;
  lab: typeof labs;
  /** ohno's routes (proto 111) in a node, as `dst via` strings, both families. */
  routes(node: string): Promise<string[]>;
}

export async function testLab(
  opts: {
    nodes: number;
    resyncPeriod?: string;
    mtu?: number;
    kubeconfig?: string;
    extraConfig?: Record<string, unknown>;
    /** `routed`: nodes in subnets joined by a router (default flat). */
    underlay?: "flat" | "routed";
    subnets?: number;
    /** `ipv6`: the agents get only their IPv6 node addresses (an IPv6-only underlay). */
    nodeFamilies?: "dual" | "ipv6";
    /** Per-node agent configuration, by node name. */
    nodeConfig?: Record<string, Record<string, unknown>>;
    /** A routed underlay's router as a BGP peer: `bird`, or `silent` (no BGP). */
    bgpRouter?: "bird" | "silent";
  },
): Promise<TestLab> {
  // At most 16 lowercase letters and digits; the pid lets the runner's guard tell this
  // run's labs from another run's, and sweep those of a run that was killed.
  const name = `t${Deno.pid}z${token}x${n++}`;
  await labs.up({
    name,
    nodes: opts.nodes,
    ohno: OHNO,
    ...(opts.resyncPeriod ? { resyncPeriod: opts.resyncPeriod } : {}),
    ...(opts.mtu ? { mtu: opts.mtu } : {}),
    ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}),
    ...(opts.extraConfig ? { extraConfig: opts.extraConfig } : {}),
    ...(opts.underlay ? { underlay: opts.underlay } : {}),
    ...(opts.subnets ? { subnets: opts.subnets } : {}),
    ...(opts.nodeFamilies ? { nodeFamilies: opts.nodeFamilies } : {}),
    ...(opts.nodeConfig ? { nodeConfig: opts.nodeConfig } : {}),
    ...(opts.bgpRouter ? { bgpRouter: opts.bgpRouter } : {}),
  }).catch(async (e) => {
    await labs.down(name).catch(() => {});
    throw e;
  });
  const handle = labOpen(name);
  return {
    name,
    lab: labs,
    state: () => labs.readState(name),
    node: (node) => handle.node(node).ns,
    async routes(node) {
      return (await labs.ohnoRoutes(handle.node(node).ns)).map((r) => `${r.dst} via ${r.gateway}`)
        .sort();
    },
    async [Symbol.asyncDispose]() {
      handle.close();
      await labs.down(name);
    },
  };
}

export { within } from "./wait.ts";
export { Netns };

/** A metric's value from a node's agent (`name` exactly, no labels), or undefined. */
export async function metric(ns: Netns, name: string): Promise<number | undefined> {
  const r = await runCommand(ns, "curl", {
    args: ["-s", "--max-time", "2", "http://127.0.0.1:9753/metrics"],
  });
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

/** Every pod pings every other pod's every address; returns the failures. */
export async function pingAll(t: TestLab, pods: string[]): Promise<string[]> {
  const failures: string[] = [];
  for (const a of pods) {
    for (const b of pods) {
      if (a === b) continue;
      for (const r of await t.lab.ping(t.name, a, b)) {
        if (!r.ok) failures.push(`${a} -> ${b} ${r.ip}`);
      }
    }
  }
  return failures;
}

/** A ping with don't-fragment and `size` bytes of payload; true when answered. */
export async function dfPing(ns: Netns, dst: string, size: number): Promise<boolean> {
  const fam = dst.includes(":") ? "-6" : "-4";
  const r = await runCommand(ns, "ping", {
    args: [fam, "-c", "1", "-W", "2", "-M", "do", "-s", String(size), dst],
  });
  return r.code === 0;
}
