/**
 * `./dev bench dataplane`: pod↔pod TCP throughput (iperf3, one stream and four) and ping
 * RTT p50/p99 across two nodes, through ohno's host-gw (flat lab) and ohno's vxlan (routed
 * lab, the nodes in two subnets), each next to the bare underlay (node↔node) of the same
 * lab, measured in one run; ratios printed. Not here yet: the hand-built twins (a bridge,
 * veth and static routes; a hand-made vxlan device with static FDB entries).
 * @module
 */

import * as labs from "../../deploy/lab/lab.ts";
import { labOpen } from "../../deploy/lab/topology.ts";
import { Netns, runCommand } from "../../netns/mod.ts";
import { OHNO } from "../support/ohno.ts";
import { note, printTable, quantile, ratio } from "./stats.ts";

const SECONDS = 3;

interface Result {
  gbps1: number;
  gbps4: number;
  p50: number;
  p99: number;
}

async function iperf(client: Netns, server: Netns, dst: string, streams: number): Promise<number> {
  const srv = server.spawn("iperf3", {
    args: ["-s", "-1", "-B", dst],
    stdout: "null",
    stderr: "null",
  });
  try {
    // Wait until the server listens (not sleep-and-assume).
    for (let i = 0; i < 100; i++) {
      const ss = await runCommand(server, "ss", { args: ["-Hltn", "sport", "=", ":5201"] });
      if (ss.stdout.trim()) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    const r = await runCommand(client, "iperf3", {
      args: ["-c", dst, "-t", String(SECONDS), "-P", String(streams), "-J"],
    });
    const j = JSON.parse(r.stdout || "{}");
    return (j.end?.sum_received?.bits_per_second ?? 0) / 1e9;
  } finally {
    try {
      srv.kill("SIGKILL");
    } catch {
      // gone
    }
    await srv.status;
  }
}

async function rtt(client: Netns, dst: string): Promise<{ p50: number; p99: number }> {
  const r = await runCommand(client, "ping", { args: ["-c", "200", "-i", "0.005", dst] });
  const t = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return { p50: quantile(t, 0.5), p99: quantile(t, 0.99) };
}

async function measure(client: Netns, server: Netns, dst: string): Promise<Result> {
  const gbps1 = await iperf(client, server, dst, 1);
  const gbps4 = await iperf(client, server, dst, 4);
  return { gbps1, gbps4, ...(await rtt(client, dst)) };
}

async function scenario(
  name: string,
  opts: Partial<labs.LabUpOptions>,
): Promise<{ pod: Result; bare: Result }> {
  await labs.up({ name, nodes: 2, ohno: OHNO, ...opts });
  try {
    await labs.podAdd(name, "node1", "a");
    await labs.podAdd(name, "node2", "b");
    const s = labs.readState(name);
    using lab = labOpen(name);
    using a = Netns.named(s.pods["a"]!.netns);
    using b = Netns.named(s.pods["b"]!.netns);
    const pod = await measure(a, b, s.pods["b"]!.ips[0]!);
    const bare = await measure(lab.node("node1").ns, lab.node("node2").ns, s.nodes[1]!.ipv4);
    return { pod, bare };
  } finally {
    await labs.down(name);
  }
}

export async function benchDataplane(): Promise<void> {
  note(`dataplane: iperf3 ${SECONDS} s per run, ping 200 × 5 ms; pod↔pod across two nodes, IPv4`);
  const tag = Deno.pid % 100000;
  const hg = await scenario(`bdph${tag}`, {});
  const vx = await scenario(`bdpv${tag}`, {
    underlay: "routed",
    extraConfig: { backend: "vxlan" },
  });
  const row = (label: string, r: Result, base: Result) => [
    label,
    r.gbps1.toFixed(2),
    ratio(r.gbps1, base.gbps1),
    r.gbps4.toFixed(2),
    ratio(r.gbps4, base.gbps4),
    r.p50.toFixed(3),
    r.p99.toFixed(3),
  ];
  printTable("pod↔pod vs the bare underlay (node↔node) of the same lab", [
    "path",
    "Gbit/s 1",
    "vs bare",
    "Gbit/s 4",
    "vs bare",
    "rtt p50 ms",
    "rtt p99 ms",
  ], [
    row("bare underlay, flat", hg.bare, hg.bare),
    row("ohno host-gw, flat", hg.pod, hg.bare),
    row("bare underlay, routed", vx.bare, vx.bare),
    row("ohno vxlan, routed", vx.pod, vx.bare),
  ]);
}
