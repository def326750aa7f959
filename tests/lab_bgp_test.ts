/**
 * The bgp backend on the lab: BIRD run by every agent, the node mesh, a top-of-rack router
 * in the routed underlay's router namespace, route reflectors, and the faults (BIRD
 * killed, a peer node removed, the agent restarted, `--cleanup`).
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { metric, type TestLab, testLab, within } from "./support/lab.ts";
import { etcdMissing } from "./support/etcd.ts";
import { ipJson, type IpRoute, type Netns, runCommand } from "../netns/mod.ts";
import { OHNO } from "./support/ohno.ts";
import { processAlive } from "../lib/proc.ts";

const missing = etcdMissing() ??
  (() => {
    try {
      Deno.statSync("/usr/sbin/bird");
      return undefined;
    } catch {
      return "bird2 is not installed (./dev setup)";
    }
  })();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const opts = { ignore: !!missing, sanitizeResources: false, sanitizeOps: false };
const BGP = { backend: "bgp" };

/** Every pod pings every other pod's every address; returns the failures. */
async function pingAll(t: TestLab, pods: string[]): Promise<string[]> {
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

/** Routes of BIRD's (proto bird) in a namespace, as `dst via gw` / `blackhole dst`. */
async function birdRoutes(ns: Netns): Promise<string[]> {
  const out: string[] = [];
  for (const f of ["-4", "-6"]) {
    for (const r of await ipJson<IpRoute[]>([f, "route", "show", "proto", "bird"], { netns: ns })) {
      out.push(r.type === "blackhole" ? `blackhole ${r.dst}` : `${r.dst} via ${r.gateway}`);
    }
  }
  return out.sort();
}

/** One pod per node (`p1` on node1, …); returns their names. */
async function podPerNode(t: TestLab): Promise<string[]> {
  const pods: string[] = [];
  for (const n of t.state().nodes) {
    const p = `p${n.name.slice(4)}`;
    await t.lab.podAdd(t.name, n.name, p);
    pods.push(p);
  }
  return pods;
}

/** The blocks of a node (from etcd, through `ohno ipam blocks`). */
async function blocksOf(t: TestLab, node: string): Promise<string[]> {
  const r = await t.lab.ipam(t.name, ["blocks", "-o", "json"]);
  assertEquals(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { cidr: string; node: string }[]).filter((b) => b.node === node)
    .map((b) => b.cidr).sort();
}

Deno.test({
  ...opts,
  name:
    `bgp node mesh: every pod pings every other over IPv4 and IPv6; peers' blocks via the peer, own blocks blackholed; sessions in lab status and metrics${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 3, extraConfig: BGP });
    const pods = await podPerNode(t);
    assertEquals(await pingAll(t, pods), []);
    const s = t.state();
    const [n1, n2, n3] = s.nodes;
    const want = [
      ...(await blocksOf(t, "node1")).map((b) => `blackhole ${b}`),
      ...(await blocksOf(t, "node2")).map((b) =>
        `${b} via ${b.includes(":") ? n2!.ipv6 : n2!.ipv4}`
      ),
      ...(await blocksOf(t, "node3")).map((b) =>
        `${b} via ${b.includes(":") ? n3!.ipv6 : n3!.ipv4}`
      ),
    ].sort();
    assertEquals(await birdRoutes(t.node("node1")), want);
    // host-gw's protocol holds nothing: BIRD's routes are its own.
    assertEquals(await t.routes("node1"), []);
    // Sessions: two peers, two families each, established, one route received on each.
    const st = await t.lab.status(t.name);
    const b1 = st.nodes.find((n) => n.name === "node1")!.bgp!;
    assertEquals(
      b1.map((b) => [b.peer, b.neighbor, b.established, b.routesReceived]).sort(),
      [
        ["node2", n2!.ipv4, true, 1],
        ["node2", n2!.ipv6, true, 1],
        ["node3", n3!.ipv4, true, 1],
        ["node3", n3!.ipv6, true, 1],
      ].sort(),
    );
    const m = await runCommand(t.node("node1"), "curl", {
      args: ["-s", "--max-time", "2", "http://127.0.0.1:9753/metrics"],
    });
    assertMatch(
      m.stdout,
      new RegExp(
        `ohno_bgp_session_established\\{session="node_node2_v4",peer="node2",neighbor="${
          n2!.ipv4
        }"\\} 1`,
      ),
    );
    assertEquals(await metric(t.node("node1"), "ohno_bgp_bird_up"), 1);
    assertEquals(await metric(t.node("node1"), "ohno_bgp_bird_restarts_total"), 0);
    assert(n1);
  },
});
