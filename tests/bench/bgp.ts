/**
 * `./dev bench bgp`: the bgp backend's convergence and data path.
 * - Join: on a routed lab (4 nodes in two subnets, the router running BIRD as the
 *   top-of-rack peer, node mesh on), node4 joins 20 times: its agent starts, claims its
 *   blocks and its BIRD announces them; measured from the claim committed (the agent's
 *   `blocks` log line) to the route present in the kernel of every other node and of the
 *   router (seen by `ip monitor`), p50/p99.
 * - Loss: before each join node4 leaves: agent stopped, `ohno daemon --cleanup` (BIRD stops
 *   and says so to its peers); measured from the cleanup's start to the routes gone from
 *   every other node and the router. A node that crashes without a word is noticed after
 *   the hold time instead (`bgpHoldTime`, 90 s; the lab router's sessions: 9 s).
 * - Throughput: pod↔pod across two nodes through BIRD's routes next to host-gw's, two flat
 *   labs in the same run, the same iperf3/ping runs as `./dev bench dataplane`.
 * @module
 */

import * as labs from "../../lab/lab.ts";
import { labOpen } from "../../lab/topology.ts";
import { formatIp, parseCidr } from "../../ipam/addr.ts";
import { Netns, runCommand } from "../../netns/netns.ts";
import { OHNO } from "../support/ohno.ts";
import { OHNO_ROUTE_PROTOCOL } from "../../daemon/routing/hostgw.ts";
import { BIRD_ROUTE_PROTOCOL } from "../../daemon/routing/bird.ts";
import { measure, type Result } from "./dataplane.ts";
import {
  bootstrapMedian,
  eachLine,
  ms,
  note,
  printTable,
  quantile,
  stopAll,
  summarize,
} from "./stats.ts";

/** `OHNO_BENCH_BGP_PART=convergence|throughput` runs one part (default both). */
export async function benchBgp(): Promise<void> {
  const part = Deno.env.get("OHNO_BENCH_BGP_PART");
  if (part !== "throughput") await benchBgpConvergence();
  if (part !== "convergence") await benchBgpThroughput();
}

function canon(cidr: string): string {
  const c = parseCidr(cidr);
  return `${formatIp(c.family, c.network)}/${c.prefix}`;
}

/** Route events of BIRD's (`proto bird`) in a namespace: `add <cidr>` / `del <cidr>` at a time. */
type Events = { key: string; at: number }[];

function follow(ns: Netns, events: Events): Deno.ChildProcess {
  const p = ns.spawn("ip", { args: ["-o", "monitor", "route"], stdout: "piped", stderr: "null" });
  eachLine(p, (l, at) => {
    const m = /^(Deleted )?(\S+\/\d+) via \S+ .*proto bird/.exec(l);
    if (m) events.push({ key: `${m[1] ? "del" : "add"} ${canon(m[2]!)}`, at });
  });
  return p;
}

/** When every one of `keys` was seen at or after `since` in every event list (the last). */
async function seenEverywhere(
  all: Events[],
  keys: string[],
  since: number,
  what: string,
): Promise<number> {
  const until = Date.now() + 60_000;
  for (;;) {
    const times = all.map((ev) =>
      keys.map((k) => ev.find((e) => e.key === k && e.at >= since)?.at)
    );
    if (times.every((ts) => ts.every((t) => t !== undefined))) {
      return Math.max(...times.flat() as number[]);
    }
    if (Date.now() > until) throw new Error(`${what}: not seen everywhere within 60 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The time of the agent's last `blocks` line (the claim committed) and the blocks. */
function lastClaim(log: string): { at: number; blocks: string[] } {
  const lines = Deno.readTextFileSync(log).split("\n").filter((l) => / blocks blocks="/.test(l));
  const l = lines.at(-1);
  if (!l) throw new Error(`no claim in ${log}`);
  const blocks = /blocks="([^"]*)"/.exec(l)![1]!.split(",").map(canon);
  return { at: Date.parse(l.split(" ")[0]!), blocks };
}

async function benchBgpConvergence(joins = 20): Promise<void> {
  const name = `bbgp${Deno.pid % 100000}`;
  await labs.up({
    name,
    nodes: 4,
    ohno: OHNO,
    underlay: "routed",
    bgpRouter: "bird",
    extraConfig: { backend: "bgp" },
  });
  const procs: Deno.ChildProcess[] = [];
  try {
    using lab = labOpen(name);
    const node4 = labs.readState(name).nodes[3]!;
    const watchers = [...lab.nodes.slice(0, 3).map((n) => n.ns), lab.ns];
    const events = watchers.map(() => [] as Events);
    watchers.forEach((ns, i) => procs.push(follow(ns, events[i]!)));
    const join: number[] = [];
    const loss: number[] = [];
    for (let i = 0; i < joins; i++) {
      // Leave: agent stopped, BIRD stopped by --cleanup, blocks released.
      const { blocks } = lastClaim(`${node4.dir}/daemon.log`);
      await labs.stopAgent(name, "node4");
      const t0 = Date.now();
      const c = await runCommand(lab.node("node4").ns, OHNO, {
        args: ["daemon", "--cleanup", "--config", `${node4.dir}/ohno.json`],
      });
      if (c.code !== 0) throw new Error(`cleanup: ${c.stderr}`);
      loss.push(await seenEverywhere(events, blocks.map((b) => `del ${b}`), t0, "loss") - t0);
      const r = await labs.ipam(name, ["release", "--node", "node4"]);
      if (r.code !== 0) throw new Error(`release: ${r.stderr}`);
      // Join: the agent starts, claims, its BIRD announces.
      await labs.startAgent(name, "node4");
      const claim = lastClaim(`${node4.dir}/daemon.log`);
      const done = await seenEverywhere(
        events,
        claim.blocks.map((b) => `add ${b}`),
        claim.at,
        `join ${i}`,
      );
      join.push(done - claim.at);
    }
    const row = (label: string, xs: number[]) => {
      const c = summarize(xs);
      return [label, ms(c.p50), ms(c.p90), ms(c.p99)];
    };
    printTable(
      `bgp route convergence, routed lab: 4 nodes in two subnets, router running BIRD, node mesh on; ${joins} times (ms)`,
      ["node4 …", "p50", "p90", "p99"],
      [
        row("joins: claim committed → route on nodes 1-3 and the router", join),
        row("leaves: --cleanup → routes gone from nodes 1-3 and the router", loss),
      ],
    );
    note(
      "(etcd watch → RouteSync → bird.conf + birdc configure → BGP sessions → BIRD's kernel routes; seen by `ip monitor`)",
    );
  } finally {
    await stopAll(procs);
    await labs.down(name);
  }
}

/** Rounds of the throughput comparison (each measures both backends, in alternating order). */
const ROUNDS = Math.round(Number(Deno.env.get("OHNO_BENCH_BGP_ROUNDS") ?? "10"));
/** A pause after switching, before measuring. */
const SETTLE_MS = 3000;
/** Equal: the bootstrap interval of the per-round ratios lies within 1 ± this. */
const EQUAL_WITHIN = 0.05;

/**
 * One flat lab of two nodes and two pods; its agents switched between host-gw and bgp
 * (restarted with the other backend) before each measurement, so the only difference
 * between the arms is where the route to the other node's pods comes from. Before every
 * measurement the route is checked to be the arm's own (proto 111 for host-gw, BIRD's
 * proto 12 for bgp) and the other's absent, so no round measures the wrong backend.
 */
async function benchBgpThroughput(): Promise<void> {
  const name = `bbgt${Deno.pid % 100000}`;
  try {
    await labs.up({ name, nodes: 2, ohno: OHNO });
    await labs.podAdd(name, "node1", "a");
    await labs.podAdd(name, "node2", "b");
    const s = labs.readState(name);
    const dst = s.pods["b"]!.ips[0]!;
    const results: Record<string, Result[]> = { "host-gw": [], bgp: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? ["bgp", "host-gw"] : ["host-gw", "bgp"];
      for (const backend of order) {
        await switchBackend(name, backend);
        using a = Netns.named(s.pods["a"]!.netns);
        using b = Netns.named(s.pods["b"]!.netns);
        results[backend]!.push(await measure(a, b, dst));
      }
      note(`bgp throughput: round ${r + 1} of ${ROUNDS}`);
    }
    const rows: string[][] = [];
    for (const k of ["gbps1", "gbps4", "p50", "p99"] as const) {
      const hg = results["host-gw"]!.map((x) => x[k]);
      const bgp = results.bgp!.map((x) => x[k]);
      // Per round, bgp over host-gw (RTT: host-gw over bgp, so that > 1 is better).
      const ratios = bgp.map((v, i) => k.startsWith("gbps") ? v / hg[i]! : hg[i]! / v);
      const b = bootstrapMedian(ratios);
      const verdict = ratios.length < 8
        ? "none (< 8 rounds)"
        : b.lo >= 1 - EQUAL_WITHIN && b.hi <= 1 + EQUAL_WITHIN
        ? `equal (±${EQUAL_WITHIN * 100} %)`
        : b.hi < 1 - EQUAL_WITHIN || b.lo > 1 + EQUAL_WITHIN
        ? "different"
        : "not shown";
      const f = (x: number) => k.startsWith("gbps") ? x.toFixed(2) : x.toFixed(3);
      rows.push([
        {
          gbps1: "Gbit/s, 1 stream",
          gbps4: "Gbit/s, 4 streams",
          p50: "rtt p50 ms",
          p99: "rtt p99 ms",
        }[k],
        f(quantile(hg, 0.5)),
        f(quantile(bgp, 0.5)),
        `${b.median.toFixed(3)}x`,
        `[${b.lo.toFixed(3)}, ${b.hi.toFixed(3)}]`,
        verdict,
      ]);
    }
    printTable(
      `pod↔pod across two nodes, one flat lab switched between backends, IPv4: BIRD's routes ` +
        `vs host-gw's (${ROUNDS} rounds, alternating order; ratio bgp/host-gw, RTT inverted)`,
      ["figure", "host-gw", "bgp", "ratio", "95% interval", "verdict"],
      rows,
    );
  } finally {
    await labs.down(name).catch(() => {});
  }
}

/** The protocols of node1's routes to node2's pod blocks (ohno's 111, BIRD's 12). */
async function routeProtocols(name: string): Promise<number[]> {
  const blocks = JSON.parse((await labs.ipam(name, ["blocks", "-o", "json"])).stdout) as {
    node: string;
    cidr: string;
  }[];
  const theirs = new Set(blocks.filter((b) => b.node === "node2").map((b) => b.cidr));
  const lab = labOpen(name);
  try {
    const ns = lab.node("node1").ns;
    const found: number[] = [];
    for (const proto of [OHNO_ROUTE_PROTOCOL, BIRD_ROUTE_PROTOCOL]) {
      const routes = await labs.ohnoRoutes(ns, proto);
      for (const r of routes) if (theirs.has(r.dst)) found.push(proto);
    }
    return found;
  } finally {
    lab.close();
  }
}

/** Restarts both agents with `backend`, then waits until node1's route is that backend's. */
async function switchBackend(name: string, backend: string): Promise<void> {
  const want = backend === "bgp" ? BIRD_ROUTE_PROTOCOL : OHNO_ROUTE_PROTOCOL;
  const only = (p: number[]) => p.length > 0 && p.every((x) => x === want);
  if (only(await routeProtocols(name))) return;
  const settled = async () => {
    // The restarted agents' start-up work (and BIRD's) must not fall into the measurement.
    await new Promise((r) => setTimeout(r, SETTLE_MS));
  };
  await labs.restartAgents(name, { backend });
  const until = Date.now() + 60_000;
  for (;;) {
    const p = await routeProtocols(name);
    if (only(p)) return await settled();
    if (Date.now() > until) {
      throw new Error(
        `node1's route to node2's pods: protocols ${p.join(",") || "none"}, not ${want}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
