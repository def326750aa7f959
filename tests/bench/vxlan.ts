/**
 * `./dev bench vxlan`: the vxlan backend's control-plane costs.
 * - Route convergence: a joining node registers its record (underlay addresses, and VTEP
 *   MACs with vxlan) and claims its blocks in the lab's etcd, as an agent starting would;
 *   measured from the block claim committed to its routes (and with vxlan neighbour and
 *   FDB entries) present in every other node's kernel (seen by `ip monitor` and `bridge
 *   monitor`), p50/p99 over 20 joins. In one run, labs of the same shape (3 nodes): vxlan
 *   on the routed underlay (nodes in two subnets), and vxlan and host-gw on the flat one
 *   (host-gw cannot reach across subnets), so the two backends compare like for like.
 * - Reconcile cost: {@link VxlanBackend} driven directly in a lab node namespace with P
 *   peers (first programming, steady state, one peer moved to another underlay address),
 *   next to the naive way (one `ip`/`bridge` process per route, neighbour and FDB entry).
 * @module
 */

import * as labs from "../../lab/lab.ts";
import { labOpen, labUp } from "../../lab/topology.ts";
import { formatIp, parseCidr, parseIp } from "../../ipam/addr.ts";
import { ip } from "../../netns/ip.ts";
import { type Netns, runCommand } from "../../netns/netns.ts";
import type { Peer } from "../../daemon/routing/types.ts";
import {
  VXLAN_DEFAULT_PORT,
  VXLAN_DEFAULT_VNI,
  VxlanBackend,
  vxlanRecord,
} from "../../daemon/routing/vxlan.ts";
import { fakeNode } from "../support/fakenodes.ts";
import { OHNO } from "../support/ohno.ts";
import { fakePeers } from "./routes.ts";
import { eachLine, ms, note, printTable, ratio, stopAll, summarize, timeIt } from "./stats.ts";

export async function benchVxlan(): Promise<void> {
  await benchVxlanReconcile();
  const joins = 20;
  const nodes = 3;
  const rows: string[][] = [];
  for (
    const [backend, underlay] of [
      ["vxlan", "routed"],
      ["vxlan", "flat"],
      ["host-gw", "flat"],
    ] as const
  ) {
    rows.push(...await convergence(backend, underlay, joins, nodes));
  }
  printTable(
    `route convergence: block claim in etcd → kernel state on every other node (${nodes} nodes), ${joins} joins (ms)`,
    ["backend, underlay", "present on every node", "p50", "p90", "p99"],
    rows,
  );
  note(
    "(etcd watch → RouteSync → backend: one rtnetlink request per change; seen by `ip monitor` / `bridge monitor`; host-gw has no neighbour or FDB entries to program)",
  );
}

/** A canonical address or CIDR (so the kernel's spelling and ours compare equal). */
function canon(text: string): string {
  if (text.includes("/")) {
    const c = parseCidr(text);
    return `${formatIp(c.family, c.network)}/${c.prefix}`;
  }
  const p = parseIp(text);
  return formatIp(p.family, p.value);
}

/** What appears in a node's kernel, keyed `r:<cidr>` (route), `n:<ip>` (neighbour), `f:<mac>` (FDB). */
type Seen = Map<string, number>;

/** Follows a node's routes, neighbours (ip monitor) and FDB (bridge monitor) into `seen`. */
function follow(ns: Netns, seen: Seen): Deno.ChildProcess[] {
  const ipMon = ns.spawn("ip", {
    args: ["-o", "monitor", "route", "neigh"],
    stdout: "piped",
    stderr: "null",
  });
  const brMon = ns.spawn("bridge", { args: ["monitor", "fdb"], stdout: "piped", stderr: "null" });
  const read = (p: Deno.ChildProcess, parse: (l: string) => string | undefined) =>
    eachLine(p, (raw, at) => {
      const l = raw.replace(/^(\[[A-Z]+\]\s*)+/, "");
      if (l.startsWith("Deleted") || l.startsWith("Delete")) return;
      const key = parse(l);
      if (key && !seen.has(key)) seen.set(key, at);
    });
  read(ipMon, (l) => {
    let m = /^(\S+\/\d+) via \S+ dev \S+ .*proto 111/.exec(l);
    if (m) return `r:${canon(m[1]!)}`;
    m = /^(\S+) dev ohno\.vxlan[46] lladdr \S+ .*PERMANENT/.exec(l);
    if (m) return `n:${canon(m[1]!)}`;
    return undefined;
  });
  read(brMon, (l) => {
    const m = /^([0-9a-f:]{17}) dev ohno\.vxlan[46] dst \S+/.exec(l);
    return m ? `f:${m[1]!.toLowerCase()}` : undefined;
  });
  return [ipMon, brMon];
}

/** Convergence of `joins` joins on a lab of `nodes` nodes; the table's rows. */
async function convergence(
  backend: "vxlan" | "host-gw",
  underlay: "flat" | "routed",
  joins: number,
  nodes: number,
): Promise<string[][]> {
  const name = `bvx${backend[0]}${underlay[0]}${Deno.pid % 100000}`;
  const vxlan = backend === "vxlan";
  await labs.up({
    name,
    nodes,
    ohno: OHNO,
    underlay,
    extraConfig: { backend },
  });
  const procs: Deno.ChildProcess[] = [];
  try {
    const s = labs.readState(name);
    using lab = labOpen(name);
    const seen = lab.nodes.map(() => new Map() as Seen);
    lab.nodes.forEach((n, i) => procs.push(...follow(n.ns, seen[i]!)));
    const settings = { vni: VXLAN_DEFAULT_VNI, port: VXLAN_DEFAULT_PORT, directRouting: false };
    const joiners = [];
    for (let i = 0; i < joins; i++) {
      const f = fakeNode(i);
      joiners.push({
        name: `join${i}`,
        ips: f.ips,
        ...(vxlan ? { backend: await vxlanRecord(`join${i}`, settings) } : {}),
      });
    }
    // The joiner runs in the lab namespace (where etcd listens) and joins as an agent would.
    const script = `
      import { ClusterIpam } from "${new URL("../../ipam/cluster.ts", import.meta.url).href}";
      import { EtcdStore } from "${new URL("../../ipam/etcd.ts", import.meta.url).href}";
      const store = new EtcdStore({ endpoints: ["${s.etcd.endpoint}"] });
      const ipam = new ClusterIpam(store);
      const joiners = ${JSON.stringify(joiners)};
      const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
      for (const j of joiners) {
        await ipam.registerNode(j.name, j.backend ? { ips: j.ips, backend: j.backend } : { ips: j.ips });
        const blocks = await ipam.claimBlocks(j.name);
        console.log(JSON.stringify({ t: Date.now(), blocks: blocks.map((b) => b.cidr) }));
        await lines.read(); // wait for the bench to see the kernel state
      }
      await store.close();
    `;
    const joiner = lab.ns.spawn(Deno.execPath(), {
      args: ["eval", "--quiet", "--no-prompt", "--cached-only", script],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    });
    const out = joiner.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const w = joiner.stdin.getWriter();
    const conv = {
      routes: [] as number[],
      neigh: [] as number[],
      fdb: [] as number[],
      all: [] as number[],
    };
    let pending = "";
    for (let i = 0; i < joins; i++) {
      while (!pending.includes("\n")) {
        const { value, done } = await out.read();
        if (done) throw new Error("the joiner stopped");
        pending += value;
      }
      const line = pending.slice(0, pending.indexOf("\n"));
      pending = pending.slice(pending.indexOf("\n") + 1);
      const { t, blocks } = JSON.parse(line) as { t: number; blocks: string[] };
      const j = joiners[i]!;
      const keys = {
        routes: blocks.map((b) => `r:${canon(b)}`),
        neigh: vxlan ? blocks.map((b) => `n:${canon(b.split("/")[0]!)}`) : [],
        fdb: j.backend ? [`f:${j.backend.vtepMac4}`, `f:${j.backend.vtepMac6}`] : [],
      };
      const wanted = [...keys.routes, ...keys.neigh, ...keys.fdb];
      const until = Date.now() + 15_000;
      while (!seen.every((m) => wanted.every((k) => m.has(k)))) {
        if (Date.now() > until) {
          const missing = lab.nodes.map((n, x) =>
            `${n.name}: ${wanted.filter((k) => !seen[x]!.has(k)).join(" ") || "-"}`
          );
          throw new Error(`join${i} did not reach every node: missing ${missing.join("; ")}`);
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      const last = (ks: string[]) => Math.max(...seen.flatMap((m) => ks.map((k) => m.get(k)!))) - t;
      conv.routes.push(last(keys.routes));
      if (vxlan) {
        conv.neigh.push(last(keys.neigh));
        conv.fdb.push(last(keys.fdb));
        conv.all.push(last(wanted));
      }
      await w.write(new TextEncoder().encode("next\n"));
    }
    await w.close();
    await joiner.status;
    const label = `${backend}, ${underlay}`;
    const row = (what: string, xs: number[]) => {
      if (!xs.length) return [label, what, "-", "-", "-"];
      const c = summarize(xs);
      return [label, what, ms(c.p50), ms(c.p90), ms(c.p99)];
    };
    return vxlan
      ? [
        row("routes (both families)", conv.routes),
        row("neighbour entries", conv.neigh),
        row("FDB entries", conv.fdb),
        row("all three", conv.all),
      ]
      : [row("routes (both families)", conv.routes)];
  } finally {
    await stopAll(procs);
    await labs.down(name);
  }
}

/** `fakePeers` with VTEP MACs published, as vxlan peers' records carry them. */
function vxlanPeers(count: number, offset = 0): Peer[] {
  return fakePeers(count, offset).map((p, j) => {
    const i = j + offset;
    const mac = (f: number) =>
      `02:00:00:0${f}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${
        (i & 255).toString(16).padStart(2, "0")
      }`;
    return {
      ...p,
      backend: {
        type: "vxlan",
        vni: VXLAN_DEFAULT_VNI,
        port: VXLAN_DEFAULT_PORT,
        vtepMac4: mac(4),
        vtepMac6: mac(6),
      },
    };
  });
}

async function benchVxlanReconcile(): Promise<void> {
  await using lab = await labUp({ name: "benchvx", nodes: 1, prefix: `ohnob-${Deno.pid}-` });
  const netns = lab.nodes[0]!.ns;
  const local: Peer = {
    node: "node1",
    ips: ["172.31.0.11", "fd00:172:31::11"],
    blocks: ["10.99.1.0/24"],
  };
  const rows: string[][] = [];
  for (const count of [10, 100, 500]) {
    const peers = vxlanPeers(count);
    const backend = new VxlanBackend({ node: "node1", netns });
    let failed = 0;
    const reconcile = async (ps: Peer[]) => {
      const r = await backend.reconcile({ local, peers: ps });
      failed += r.failed.length + r.skipped.length;
    };
    const first = await timeIt(() => reconcile(peers));
    const steady: number[] = [];
    const change: number[] = [];
    for (let i = 0; i < 10; i++) {
      steady.push(await timeIt(() => reconcile(peers)));
      const moved = peers.map((p, j) => (j === i ? { ...p, ips: ["172.31.0.250", p.ips[1]!] } : p));
      change.push(await timeIt(() => reconcile(moved)));
      await backend.reconcile({ local, peers });
    }
    if (failed) throw new Error(`vxlan reconcile with ${count} peers: ${failed} failed or skipped`);
    // The naive way, on the same devices emptied: one process per route, neighbour, FDB entry.
    await backend.reconcile({ local, peers: [] });
    const naive = await timeIt(async () => {
      for (const p of peers) {
        for (const b of p.blocks) {
          const fam = b.includes(":") ? 6 : 4;
          const dev = `ohno.vxlan${fam}`;
          const vtep = canon(b.split("/")[0]!);
          const mac = String(p.backend![`vtepMac${fam}`]);
          const fdb = await runCommand(netns, "bridge", {
            args: [
              "fdb",
              "replace",
              mac,
              "dev",
              dev,
              "dst",
              p.ips[fam === 4 ? 0 : 1]!,
              "self",
              "permanent",
            ],
          });
          if (!fdb.success) throw new Error(`naive bridge fdb replace: ${fdb.stderr.trim()}`);
          await ip(["neigh", "replace", vtep, "lladdr", mac, "dev", dev, "nud", "permanent"], {
            netns,
          });
          await ip(["route", "replace", b, "via", vtep, "dev", dev, "onlink", "proto", "111"], {
            netns,
          });
        }
      }
    });
    await backend.cleanup();
    rows.push([
      `${count} peers (${count * 2} routes + neigh + FDB)`,
      ms(first),
      ms(naive),
      ratio(first, naive),
      ms(summarize(steady).p50),
      ms(summarize(change).p50),
    ]);
  }
  printTable("vxlan reconcile (ms): VxlanBackend vs one ip/bridge process per entry", [
    "table",
    "first",
    "naive (per entry)",
    "ratio",
    "steady p50",
    "1 peer moved p50",
  ], rows);
}
