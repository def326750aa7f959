/**
 * `./dev bench dataplane`: pod↔pod TCP throughput (iperf3, one stream and four) and ping
 * RTT p50/p99 across two nodes, through ohno's host-gw (flat lab) and ohno's vxlan (routed
 * lab, the nodes in two subnets), each next to the bare underlay (node↔node) of the same
 * lab, and next to a hand-built twin of the same shape in the same lab, measured in one
 * run; ratios printed (goal: ohno ≥ 0.98× its twin).
 *
 * The twins are built by the bench with plain `ip`/`bridge` commands in the same two node
 * namespaces, on pod subnets ohno never uses (10.250.N.0/24), and torn down after:
 * - host-gw twin: per node a Linux bridge with the gateway address, a veth pair into a pod
 *   namespace, and a static route to the peer node's twin subnet via its underlay address;
 * - vxlan twin: the same pods and bridges, plus per node a vxlan device (VNI 42, port 8472,
 *   `local <underlay>`, `nolearning`, MTU underlay − 50 as ohno's `ohno.vxlan4`), and per
 *   peer a route `via <peer subnet's network address> dev vxtwin onlink`, a permanent
 *   neighbour entry and a static FDB entry to the peer's underlay address.
 * Pods of a twin get the MTU ohno gave its pods in the same lab. ohno and its twin are
 * measured alternately, {@link ROUNDS} rounds, the median of each kept.
 * @module
 */

import * as labs from "../../lab/lab.ts";
import { type Lab, labNetnsName, labOpen } from "../../lab/topology.ts";
import {
  createNamedNetns,
  deleteNamedNetns,
  ip,
  IpBatch,
  ipJson,
  Netns,
  runCommand,
} from "../../netns/mod.ts";
import { OHNO } from "../support/ohno.ts";
import { note, printTable, quantile, ratio } from "./stats.ts";

const SECONDS = 3;
/** ohno and its twin measured alternately this many times; medians kept. */
const ROUNDS = 3;

export interface Result {
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

export async function measure(client: Netns, server: Netns, dst: string): Promise<Result> {
  const gbps1 = await iperf(client, server, dst, 1);
  const gbps4 = await iperf(client, server, dst, 4);
  return { gbps1, gbps4, ...(await rtt(client, dst)) };
}

function median(xs: number[]): number {
  return quantile(xs, 0.5);
}

/** Per metric, the median over rounds. */
function medianOf(rs: Result[]): Result {
  return {
    gbps1: median(rs.map((r) => r.gbps1)),
    gbps4: median(rs.map((r) => r.gbps4)),
    p50: median(rs.map((r) => r.p50)),
    p99: median(rs.map((r) => r.p99)),
  };
}

async function mtuOf(ns: Netns, dev: string): Promise<number> {
  const [l] = await ipJson<{ mtu: number }[]>(["link", "show", "dev", dev], { netns: ns });
  if (!l) throw new Error(`no ${dev}`);
  return l.mtu;
}

/** The twin's names in a node: one bridge, one veth, the vxlan device. */
const TW = { bridge: "twbr0", veth: "twv0", vxlan: "vxtwin", vni: "42", port: "8472" };
const twinSubnet = (i: number) => `10.250.${i + 1}`;
const twinMac = (i: number) => `02:74:77:00:00:${(i + 1).toString(16).padStart(2, "0")}`;

/**
 * Builds the hand-made twin of `kind` between node1 and node2 of `lab`: pods with MTU
 * `podMtu`; returns the two pod namespaces and the far pod's address. Disposing removes it
 * all (also when the build failed half way).
 */
async function buildTwin(
  lab: Lab,
  kind: "host-gw" | "vxlan",
  podMtu: number,
): Promise<{ a: Netns; b: Netns; dst: string } & AsyncDisposable> {
  const nodes = [lab.node("node1"), lab.node("node2")];
  const podNs = nodes.map((_, i) => labNetnsName(lab.name, undefined, `pod-twin${i + 1}`));
  const handles: Netns[] = [];
  const teardown = async () => {
    for (const h of handles) h.close();
    for (const n of nodes) {
      for (const dev of [TW.veth, TW.bridge, TW.vxlan]) {
        await ip(["link", "del", dev], { netns: n.ns }).catch(() => {});
      }
      for (let j = 0; j < nodes.length; j++) {
        await ip(["route", "del", `${twinSubnet(j)}.0/24`], { netns: n.ns }).catch(() => {});
      }
    }
    for (const p of podNs) await deleteNamedNetns(p).catch(() => {});
  };
  try {
    const underlayMtu = await mtuOf(nodes[0]!.ns, nodes[0]!.ifname);
    for (let i = 0; i < nodes.length; i++) {
      const n = nodes[i]!;
      const pod = await createNamedNetns(podNs[i]!);
      handles.push(pod);
      const sub = twinSubnet(i);
      const b = new IpBatch()
        .add("link", "add", TW.bridge, "mtu", String(podMtu), "type", "bridge")
        .add("addr", "add", `${sub}.1/24`, "dev", TW.bridge)
        .add("link", "set", TW.bridge, "up")
        .add(
          "link",
          "add",
          TW.veth,
          "mtu",
          String(podMtu),
          "type",
          "veth",
          "peer",
          "name",
          "eth0",
          "mtu",
          String(podMtu),
          "netns",
          podNs[i]!,
        )
        .add("link", "set", TW.veth, "master", TW.bridge)
        .add("link", "set", TW.veth, "up");
      const bridgeCmds: string[][] = [];
      if (kind === "vxlan") {
        b.add(
          "link",
          "add",
          TW.vxlan,
          "address",
          twinMac(i),
          "mtu",
          String(underlayMtu - 50),
          "type",
          "vxlan",
          "id",
          TW.vni,
          "local",
          n.ipv4,
          "dstport",
          TW.port,
          "nolearning",
        ).add("link", "set", TW.vxlan, "addrgenmode", "none")
          .add("link", "set", TW.vxlan, "up");
      }
      for (let j = 0; j < nodes.length; j++) {
        if (j === i) continue;
        const peer = `${twinSubnet(j)}.0`;
        if (kind === "host-gw") {
          b.add("route", "add", `${peer}/24`, "via", nodes[j]!.ipv4);
        } else {
          b.add("neigh", "add", peer, "lladdr", twinMac(j), "dev", TW.vxlan, "nud", "permanent")
            .add("route", "add", `${peer}/24`, "via", peer, "dev", TW.vxlan, "onlink");
          bridgeCmds.push([
            "fdb",
            "append",
            twinMac(j),
            "dev",
            TW.vxlan,
            "dst",
            nodes[j]!.ipv4,
            "self",
            "permanent",
          ]);
        }
      }
      await b.run({ netns: n.ns });
      for (const args of bridgeCmds) {
        const r = await runCommand(n.ns, "bridge", { args });
        if (!r.success) throw new Error(`bridge ${args.join(" ")}: ${r.stderr.trim()}`);
      }
      await new IpBatch()
        .add("link", "set", "lo", "up")
        .add("addr", "add", `${sub}.2/24`, "dev", "eth0")
        .add("link", "set", "eth0", "up")
        .add("route", "add", "default", "via", `${sub}.1`)
        .run({ netns: pod });
    }
    const dst = `${twinSubnet(1)}.2`;
    // The twin carries traffic before it is measured (and neighbour discovery is settled).
    const until = Date.now() + 10_000;
    while ((await runCommand(handles[0]!, "ping", { args: ["-c", "1", "-W", "1", dst] })).code) {
      if (Date.now() > until) throw new Error(`the ${kind} twin does not carry pings`);
    }
    return { a: handles[0]!, b: handles[1]!, dst, [Symbol.asyncDispose]: teardown };
  } catch (e) {
    await teardown();
    throw e;
  }
}

interface Scenario {
  pod: Result;
  twin: Result;
  bare: Result;
  podMtu: number;
}

async function scenario(
  name: string,
  kind: "host-gw" | "vxlan",
  opts: Partial<labs.LabUpOptions>,
): Promise<Scenario> {
  await labs.up({ name, nodes: 2, ohno: OHNO, ...opts });
  try {
    await labs.podAdd(name, "node1", "a");
    await labs.podAdd(name, "node2", "b");
    const s = labs.readState(name);
    using lab = labOpen(name);
    using a = Netns.named(s.pods["a"]!.netns);
    using b = Netns.named(s.pods["b"]!.netns);
    const podMtu = await mtuOf(a, "eth0");
    await using twin = await buildTwin(lab, kind, podMtu);
    const pods: Result[] = [];
    const twins: Result[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      pods.push(await measure(a, b, s.pods["b"]!.ips[0]!));
      twins.push(await measure(twin.a, twin.b, twin.dst));
    }
    const bare = await measure(lab.node("node1").ns, lab.node("node2").ns, s.nodes[1]!.ipv4);
    return { pod: medianOf(pods), twin: medianOf(twins), bare, podMtu };
  } finally {
    await labs.down(name);
  }
}

export async function benchDataplane(): Promise<void> {
  note(
    `dataplane: iperf3 ${SECONDS} s per run, ping 200 × 5 ms; pod↔pod across two nodes, IPv4; ` +
      `ohno and its twin alternately, median of ${ROUNDS} rounds`,
  );
  const tag = Deno.pid % 100000;
  const hg = await scenario(`bdph${tag}`, "host-gw", {});
  const vx = await scenario(`bdpv${tag}`, "vxlan", {
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
  const vs = (label: string, sc: Scenario) => [
    label,
    `${sc.pod.gbps1.toFixed(2)} / ${sc.twin.gbps1.toFixed(2)}`,
    ratio(sc.pod.gbps1, sc.twin.gbps1),
    `${sc.pod.gbps4.toFixed(2)} / ${sc.twin.gbps4.toFixed(2)}`,
    ratio(sc.pod.gbps4, sc.twin.gbps4),
    `${sc.pod.p50.toFixed(3)} / ${sc.twin.p50.toFixed(3)}`,
    ratio(sc.twin.p50, sc.pod.p50),
    `${sc.pod.p99.toFixed(3)} / ${sc.twin.p99.toFixed(3)}`,
    ratio(sc.twin.p99, sc.pod.p99),
    String(sc.podMtu),
  ];
  printTable(
    "ohno vs its hand-built twin in the same lab (ratios: ohno/twin for throughput, twin/ohno for rtt; goal ≥ 0.98x)",
    [
      "path",
      "Gbit/s 1 ohno/twin",
      "ratio",
      "Gbit/s 4 ohno/twin",
      "ratio",
      "rtt p50 ms",
      "ratio",
      "rtt p99 ms",
      "ratio",
      "pod MTU",
    ],
    [
      vs("host-gw, flat (twin: bridge + veth + static routes)", hg),
      vs("vxlan, routed (twin: vxtwin + static FDB/neigh)", vx),
    ],
  );
}
