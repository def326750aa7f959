/**
 * `./dev bench dataplane`: pod↔pod TCP throughput (iperf3, one stream and four) and ping
 * RTT p50/p99 across two nodes, IPv4 and IPv6 pods, through ohno's host-gw (flat lab) and
 * ohno's vxlan (routed lab, the nodes in two subnets), each next to the bare underlay
 * (node↔node) of the same lab and next to a hand-built twin of the same shape in the same
 * lab, measured in one run.
 *
 * The goal is ohno ≥ 0.98× its twin; on a shared 2-core machine single runs swing far
 * more than 2% either way, so the comparison is made statistically:
 * - **many short interleaved rounds**: each round measures ohno and its twin back to back
 *   (the order alternates from round to round, so a drift in the machine's load does not
 *   favour one side), {@link ROUNDS} rounds of {@link SECONDS}-second iperf3 runs;
 * - **per-round ratios** (ohno/twin for throughput, twin/ohno for RTT: above 1 is ohno
 *   better), so load that changes between rounds cancels within a round;
 * - **median of the ratios with a bootstrap 95% interval** (percentile bootstrap, seeded);
 *   per figure the verdict is "≥0.98x holds" when the interval's lower bound is ≥ 0.98,
 *   "below 0.98x" when its upper bound is < 0.98, else "not shown" (more rounds or a
 *   quieter machine needed); with fewer than 8 rounds no verdict is given;
 * - **pinned CPUs**: with two or more CPUs the iperf3 client runs on CPU 0 and the server
 *   on CPU 1 (`taskset`), for ohno and twin alike, so the scheduler's placement is not a
 *   difference between them (`OHNO_BENCH_DP_PIN=0` turns it off).
 * `OHNO_BENCH_DP_ROUNDS` (default 12) and `OHNO_BENCH_DP_SECONDS` (default 1) set the
 * rounds and the iperf3 run length.
 *
 * The twins are built by the bench with plain `ip`/`bridge` commands in the same two node
 * namespaces, on pod subnets ohno never uses (10.250.N.0/24, fd50:N::/64), and torn down
 * after:
 * - host-gw twin: per node a Linux bridge with the gateway addresses, a veth pair into a
 *   pod namespace, and static routes to the peer node's twin subnets via its underlay
 *   addresses;
 * - vxlan twin: the same pods and bridges, plus per node and underlay family a vxlan
 *   device (VNI 42, port 8472, `local <underlay>`, `nolearning`, MTU underlay − 50 / − 70,
 *   TX checksum offload off, as ohno's `ohno.vxlan4`/`ohno.vxlan6`), and per peer a route
 *   `via <peer subnet's network address> dev … onlink`, a permanent neighbour entry and a
 *   static FDB entry to the peer's underlay address (IPv4 pods over the IPv4 underlay, IPv6
 *   over IPv6, as ohno on a dual-stack underlay).
 * Pods of a twin get the MTU ohno gave its pods in the same lab.
 * @module
 */

import * as labs from "../../lab/lab.ts";
import { type Lab, labNetnsName, labOpen } from "../../lab/topology.ts";
import { ip, IpBatch, ipJson } from "../../netns/ip.ts";
import { linkTxChecksum } from "../../netns/links.ts";
import { createNamedNetns, deleteNamedNetns } from "../../netns/manage.ts";
import { Netns, runCommand } from "../../netns/netns.ts";
import { OHNO } from "../support/ohno.ts";
import { bootstrapMedian, note, printTable, quantile, ratio } from "./stats.ts";

const envNumber = (name: string, dflt: number) => {
  const v = Number(Deno.env.get(name) ?? dflt);
  if (!(v > 0)) throw new Error(`${name} must be a positive number`);
  return v;
};
/** iperf3 run length, seconds. */
const SECONDS = envNumber("OHNO_BENCH_DP_SECONDS", 1);
/** Interleaved rounds (ohno and its twin once each per round and pod family). */
const ROUNDS = Math.round(envNumber("OHNO_BENCH_DP_ROUNDS", 12));
/** The bare underlay is measured every this many rounds (it is context, not the goal). */
const BARE_EVERY = 3;
const GOAL = 0.98;
/** Fewer rounds than this give no verdict: a bootstrap of a handful of ratios means little. */
const MIN_ROUNDS_FOR_VERDICT = 8;
/** iperf3 client and server CPUs, or undefined (not pinned). */
const PIN = navigator.hardwareConcurrency >= 2 && Deno.env.get("OHNO_BENCH_DP_PIN") !== "0"
  ? { client: "0", server: "1" }
  : undefined;

type Family = 4 | 6;
const METRICS = ["gbps1", "gbps4", "p50", "p99"] as const;
type Metric = typeof METRICS[number];
export type Result = Record<Metric, number>;
const LABEL: Record<Metric, string> = {
  gbps1: "Gbit/s, 1 stream",
  gbps4: "Gbit/s, 4 streams",
  p50: "rtt p50 ms",
  p99: "rtt p99 ms",
};
/** Throughput: higher is better; RTT: lower. */
const HIGHER: Record<Metric, boolean> = { gbps1: true, gbps4: true, p50: false, p99: false };

/** A command, pinned to `cpu` when pinning is on. */
function pinned(cpu: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpu ? ["taskset", ["-c", cpu, cmd, ...args]] : [cmd, args];
}

async function iperf(client: Netns, server: Netns, dst: string, streams: number): Promise<number> {
  for (let attempt = 1;; attempt++) {
    const [sc, sa] = pinned(PIN?.server, "iperf3", ["-s", "-1", "-B", dst]);
    const srv = server.spawn(sc, { args: sa, stdout: "null", stderr: "null" });
    try {
      // Wait until the server listens (not sleep-and-assume).
      for (let i = 0; i < 200; i++) {
        const ss = await runCommand(server, "ss", { args: ["-Hltn", "sport", "=", ":5201"] });
        if (ss.stdout.trim()) break;
        await new Promise((res) => setTimeout(res, 25));
      }
      const [cc, ca] = pinned(PIN?.client, "iperf3", [
        "-c",
        dst,
        "-t",
        String(SECONDS),
        "-P",
        String(streams),
        "-J",
      ]);
      const r = await runCommand(client, cc, { args: ca });
      let bps: number | undefined;
      try {
        bps = JSON.parse(r.stdout || "{}").end?.sum_received?.bits_per_second;
      } catch {
        // not JSON: reported below
      }
      if (typeof bps === "number" && bps > 0) return bps / 1e9;
      if (attempt >= 3) {
        throw new Error(`iperf3 to ${dst} gave no result: ${(r.stdout + r.stderr).slice(-300)}`);
      }
    } finally {
      try {
        srv.kill("SIGKILL");
      } catch {
        // gone
      }
      await srv.status;
    }
  }
}

async function rtt(client: Netns, dst: string): Promise<{ p50: number; p99: number }> {
  const r = await runCommand(client, "ping", { args: ["-c", "100", "-i", "0.005", dst] });
  const t = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (t.length < 50) throw new Error(`ping ${dst}: ${t.length} of 100 answered`);
  return { p50: quantile(t, 0.5), p99: quantile(t, 0.99) };
}

/** One path's four figures between two pods (also used by the bgp bench). */
export async function measure(client: Netns, server: Netns, dst: string): Promise<Result> {
  const gbps1 = await iperf(client, server, dst, 1);
  const gbps4 = await iperf(client, server, dst, 4);
  return { gbps1, gbps4, ...(await rtt(client, dst)) };
}

function measurePath(p: Path, fam: Family): Promise<Result> {
  return measure(p.a, p.b, fam === 4 ? p.dst4 : p.dst6);
}

async function mtuOf(ns: Netns, dev: string): Promise<number> {
  const [l] = await ipJson<{ mtu: number }[]>(["link", "show", "dev", dev], { netns: ns });
  if (!l) throw new Error(`no ${dev}`);
  return l.mtu;
}

/** A client and a server namespace and the server's address of each family. */
interface Path {
  a: Netns;
  b: Netns;
  dst4: string;
  dst6: string;
}

/** The twin's names in a node: one bridge, one veth, the vxlan devices. */
const TW = {
  bridge: "twbr0",
  veth: "twv0",
  vxlan: { 4: "vxtwin", 6: "vxtwin6" },
  vni: "42",
  port: "8472",
};
const twinSubnet = (i: number) => `10.250.${i + 1}`;
const twinSubnet6 = (i: number) => `fd50:${i + 1}::`;
const twinMac = (i: number, fam: Family) =>
  `02:74:77:00:0${fam}:${(i + 1).toString(16).padStart(2, "0")}`;

/**
 * Builds the hand-made twin of `kind` between node1 and node2 of `lab`: pods with MTU
 * `podMtu`; returns the two pod namespaces and the far pod's addresses. Disposing removes
 * it all (also when the build failed half way).
 */
async function buildTwin(
  lab: Lab,
  kind: "host-gw" | "vxlan",
  podMtu: number,
): Promise<Path & AsyncDisposable> {
  const nodes = [lab.node("node1"), lab.node("node2")];
  const podNs = nodes.map((_, i) => labNetnsName(lab.name, undefined, `pod-twin${i + 1}`));
  const handles: Netns[] = [];
  const teardown = async () => {
    for (const h of handles) h.close();
    for (const n of nodes) {
      for (const dev of [TW.veth, TW.bridge, TW.vxlan[4], TW.vxlan[6]]) {
        await ip(["link", "del", dev], { netns: n.ns }).catch(() => {});
      }
      for (let j = 0; j < nodes.length; j++) {
        await ip(["route", "del", `${twinSubnet(j)}.0/24`], { netns: n.ns }).catch(() => {});
        await ip(["-6", "route", "del", `${twinSubnet6(j)}/64`], { netns: n.ns }).catch(() => {});
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
      const sub6 = twinSubnet6(i);
      const b = new IpBatch()
        .add("link", "add", TW.bridge, "mtu", String(podMtu), "type", "bridge")
        .add("addr", "add", `${sub}.1/24`, "dev", TW.bridge)
        .add("addr", "add", `${sub6}1/64`, "dev", TW.bridge, "nodad")
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
      const local = { 4: n.ipv4, 6: n.ipv6 };
      if (kind === "vxlan") {
        for (const fam of [4, 6] as const) {
          const dev = TW.vxlan[fam];
          b.add(
            "link",
            "add",
            dev,
            "address",
            twinMac(i, fam),
            "mtu",
            String(underlayMtu - (fam === 4 ? 50 : 70)),
            "type",
            "vxlan",
            "id",
            TW.vni,
            "local",
            local[fam],
            "dstport",
            TW.port,
            "nolearning",
          ).add("link", "set", dev, "addrgenmode", "none")
            .add("link", "set", dev, "up");
        }
      }
      for (let j = 0; j < nodes.length; j++) {
        if (j === i) continue;
        const peer = { 4: `${twinSubnet(j)}.0`, 6: twinSubnet6(j) };
        const plen = { 4: 24, 6: 64 };
        const under = { 4: nodes[j]!.ipv4, 6: nodes[j]!.ipv6 };
        for (const fam of [4, 6] as const) {
          if (kind === "host-gw") {
            b.add("route", "add", `${peer[fam]}/${plen[fam]}`, "via", under[fam]);
            continue;
          }
          const dev = TW.vxlan[fam];
          b.add(
            "neigh",
            "add",
            peer[fam],
            "lladdr",
            twinMac(j, fam),
            "dev",
            dev,
            "nud",
            "permanent",
          )
            .add(
              "route",
              "add",
              `${peer[fam]}/${plen[fam]}`,
              "via",
              peer[fam],
              "dev",
              dev,
              "onlink",
            );
          bridgeCmds.push([
            "fdb",
            "append",
            twinMac(j, fam),
            "dev",
            dev,
            "dst",
            under[fam],
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
      // As ohno's devices: TX checksum offload off.
      if (kind === "vxlan") {
        for (const fam of [4, 6] as const) linkTxChecksum(TW.vxlan[fam], false, { netns: n.ns });
      }
      await new IpBatch()
        .add("link", "set", "lo", "up")
        .add("addr", "add", `${sub}.2/24`, "dev", "eth0")
        .add("addr", "add", `${sub6}2/64`, "dev", "eth0", "nodad")
        .add("link", "set", "eth0", "up")
        .add("route", "add", "default", "via", `${sub}.1`)
        .add("route", "add", "::/0", "via", `${sub6}1`)
        .run({ netns: pod });
    }
    const dst4 = `${twinSubnet(1)}.2`;
    const dst6 = `${twinSubnet6(1)}2`;
    // The twin carries traffic before it is measured (and neighbour discovery is settled).
    for (const dst of [dst4, dst6]) {
      const until = Date.now() + 10_000;
      while ((await runCommand(handles[0]!, "ping", { args: ["-c", "1", "-W", "1", dst] })).code) {
        if (Date.now() > until) throw new Error(`the ${kind} twin does not carry pings to ${dst}`);
      }
    }
    return { a: handles[0]!, b: handles[1]!, dst4, dst6, [Symbol.asyncDispose]: teardown };
  } catch (e) {
    await teardown();
    throw e;
  }
}

/** Per family: ohno's, the twin's and the bare underlay's results, round by round. */
interface Scenario {
  label: string;
  podMtu: number;
  fam: Record<Family, { pod: Result[]; twin: Result[]; bare: Result[] }>;
}

async function scenario(
  name: string,
  label: string,
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
    const [b4, b6] = s.pods["b"]!.ips as [string, string];
    const ohno: Path = { a, b, dst4: b4, dst6: b6 };
    const bare: Path = {
      a: lab.node("node1").ns,
      b: lab.node("node2").ns,
      dst4: s.nodes[1]!.ipv4,
      dst6: s.nodes[1]!.ipv6,
    };
    const out: Scenario = {
      label,
      podMtu,
      fam: { 4: { pod: [], twin: [], bare: [] }, 6: { pod: [], twin: [], bare: [] } },
    };
    for (let r = 0; r < ROUNDS; r++) {
      for (const fam of [4, 6] as const) {
        const f = out.fam[fam];
        // The order alternates: a drift in load favours neither side.
        if (r % 2 === 0) {
          f.pod.push(await measurePath(ohno, fam));
          f.twin.push(await measurePath(twin, fam));
        } else {
          f.twin.push(await measurePath(twin, fam));
          f.pod.push(await measurePath(ohno, fam));
        }
        if (r % BARE_EVERY === 0) f.bare.push(await measurePath(bare, fam));
      }
    }
    return out;
  } finally {
    await labs.down(name);
  }
}

function medianOf(rs: Result[]): Result {
  const m = {} as Result;
  for (const k of METRICS) m[k] = quantile(rs.map((r) => r[k]), 0.5);
  return m;
}

const fmt = (k: Metric, x: number) => (HIGHER[k] ? x.toFixed(2) : x.toFixed(3));

export async function benchDataplane(): Promise<void> {
  note(
    `dataplane: pod↔pod across two nodes, IPv4 and IPv6 pods; ${ROUNDS} interleaved rounds of ` +
      `iperf3 ${SECONDS} s (1 and 4 streams) and ping 100 × 5 ms, ohno and its twin back to ` +
      `back in alternating order; iperf3 ${
        PIN ? `client on CPU ${PIN.client}, server on CPU ${PIN.server}` : "not pinned"
      }; ${navigator.hardwareConcurrency} CPUs, load average ${Deno.loadavg().join(" ")}`,
  );
  const tag = Deno.pid % 100000;
  const scenarios = [
    await scenario(`bdph${tag}`, "host-gw, flat", "host-gw", {}),
    await scenario(`bdpv${tag}`, "vxlan, routed", "vxlan", {
      underlay: "routed",
      extraConfig: { backend: "vxlan" },
    }),
  ];
  const bareRows: string[][] = [];
  for (const sc of scenarios) {
    for (const fam of [4, 6] as const) {
      const f = sc.fam[fam];
      const bare = medianOf(f.bare);
      const pod = medianOf(f.pod);
      for (const [what, r] of [["bare underlay", bare], ["ohno", pod]] as const) {
        bareRows.push([
          `${sc.label}, IPv${fam}: ${what}`,
          fmt("gbps1", r.gbps1),
          ratio(r.gbps1, bare.gbps1),
          fmt("gbps4", r.gbps4),
          ratio(r.gbps4, bare.gbps4),
          fmt("p50", r.p50),
          fmt("p99", r.p99),
        ]);
      }
    }
  }
  printTable("pod↔pod vs the bare underlay (node↔node) of the same lab: medians", [
    "path",
    "Gbit/s 1",
    "vs bare",
    "Gbit/s 4",
    "vs bare",
    "rtt p50 ms",
    "rtt p99 ms",
  ], bareRows);

  const rows: string[][] = [];
  for (const sc of scenarios) {
    for (const fam of [4, 6] as const) {
      const f = sc.fam[fam];
      for (const k of METRICS) {
        const ratios = f.pod.map((p, i) => HIGHER[k] ? p[k] / f.twin[i]![k] : f.twin[i]![k] / p[k]);
        const b = bootstrapMedian(ratios);
        const verdict = ratios.length < MIN_ROUNDS_FOR_VERDICT
          ? `none (< ${MIN_ROUNDS_FOR_VERDICT} rounds)`
          : b.lo >= GOAL
          ? `≥${GOAL}x holds`
          : b.hi < GOAL
          ? `below ${GOAL}x`
          : "not shown";
        rows.push([
          `${sc.label}, IPv${fam}`,
          LABEL[k],
          fmt(k, quantile(f.pod.map((r) => r[k]), 0.5)),
          fmt(k, quantile(f.twin.map((r) => r[k]), 0.5)),
          `${b.median.toFixed(3)}x`,
          `[${b.lo.toFixed(3)}, ${b.hi.toFixed(3)}]`,
          verdict,
        ]);
      }
    }
  }
  printTable(
    `ohno vs its hand-built twin in the same lab: median of ${ROUNDS} per-round ratios (ohno/twin for throughput, twin/ohno for rtt; > 1 = ohno better), bootstrap 95% interval, goal ≥ ${GOAL}x`,
    ["path", "figure", "ohno", "twin", "ratio", "95% interval", "verdict"],
    rows,
  );
  note(
    `pod MTU: ${
      scenarios.map((s) => `${s.label} ${s.podMtu}`).join(", ")
    }; twins: host-gw = bridge + veth + static routes, vxlan = vxtwin/vxtwin6 + static FDB/neigh, TX checksum offload off as ohno's`,
  );
}
