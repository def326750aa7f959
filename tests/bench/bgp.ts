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
import { measure, type Result } from "./dataplane.ts";
import { eachLine, ms, note, printTable, quantile, ratio, stopAll, summarize } from "./stats.ts";

export async function benchBgp(): Promise<void> {
  await benchBgpConvergence();
  await benchBgpThroughput();
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

const ROUNDS = 3;

async function benchBgpThroughput(): Promise<void> {
  const tag = Deno.pid % 100000;
  const labsUp: { backend: string; name: string }[] = [
    { backend: "host-gw", name: `bbgh${tag}` },
    { backend: "bgp", name: `bbgb${tag}` },
  ];
  try {
    for (const l of labsUp) {
      await labs.up({ name: l.name, nodes: 2, ohno: OHNO, extraConfig: { backend: l.backend } });
      await labs.podAdd(l.name, "node1", "a");
      await labs.podAdd(l.name, "node2", "b");
    }
    const results = new Map<string, Result[]>(labsUp.map((l) => [l.backend, []]));
    // Alternately, so that the machine's noise falls on both alike.
    for (let r = 0; r < ROUNDS; r++) {
      for (const l of labsUp) {
        const s = labs.readState(l.name);
        using a = Netns.named(s.pods["a"]!.netns);
        using b = Netns.named(s.pods["b"]!.netns);
        results.get(l.backend)!.push(await measure(a, b, s.pods["b"]!.ips[0]!));
      }
    }
    const med = (xs: number[]) => quantile(xs, 0.5);
    const of = (backend: string) => {
      const rs = results.get(backend)!;
      return {
        gbps1: med(rs.map((x) => x.gbps1)),
        gbps4: med(rs.map((x) => x.gbps4)),
        p50: med(rs.map((x) => x.p50)),
        p99: med(rs.map((x) => x.p99)),
      };
    };
    const hg = of("host-gw");
    const bgp = of("bgp");
    const row = (label: string, x: Result) => [
      label,
      x.gbps1.toFixed(2),
      ratio(x.gbps1, hg.gbps1),
      x.gbps4.toFixed(2),
      ratio(x.gbps4, hg.gbps4),
      x.p50.toFixed(3),
      x.p99.toFixed(3),
    ];
    printTable(
      `pod↔pod across two nodes, flat labs, IPv4: BIRD's routes vs host-gw's (median of ${ROUNDS} rounds, alternately)`,
      ["routes", "Gbit/s 1", "vs host-gw", "Gbit/s 4", "vs host-gw", "rtt p50 ms", "rtt p99 ms"],
      [row("host-gw (proto 111)", hg), row("bgp (BIRD, proto 12)", bgp)],
    );
  } finally {
    for (const l of labsUp) await labs.down(l.name).catch(() => {});
  }
}
