/**
 * The bgp backend on the lab: BIRD run by every agent, the node mesh, a top-of-rack router
 * in the routed underlay's router namespace, route reflectors, and the faults (BIRD
 * killed, a peer node removed, the agent restarted, `--cleanup`).
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { metric, pingAll, type TestLab, testLab, within } from "./support/lab.ts";
import { etcdMissing } from "./support/etcd.ts";
import { ipJson, type IpRoute } from "../netns/ip.ts";
import { Netns, runCommand } from "../netns/netns.ts";
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
    assertMatch(m.stdout, /ohno_routes_programmed\{backend="bgp",family="ipv4"\} 2/);
    assertMatch(m.stdout, /ohno_routes_programmed\{backend="bgp",family="ipv6"\} 2/);
    assertEquals(await metric(t.node("node1"), "ohno_bgp_bird_restarts_total"), 0);
    assert(n1);
  },
});

/** A node's BIRD pid (its pid file under the agent's run dir). */
function birdPid(t: TestLab, node: string): number {
  const n = t.state().nodes.find((x) => x.name === node)!;
  return Number(Deno.readTextFileSync(`${n.dir}/run/bird.pid`).trim());
}

Deno.test({
  ...opts,
  name:
    `bgp top-of-rack only (no mesh, routed underlay): pods ping across subnets through the router's learned routes, shown in its kernel table${skip}`,
  async fn() {
    await using t = await testLab({
      nodes: 4,
      underlay: "routed",
      bgpRouter: "bird",
      extraConfig: { ...BGP, bgpNodeMesh: false },
    });
    const pods = await podPerNode(t);
    assertEquals(await pingAll(t, pods), []);
    const s = t.state();
    // The router learned every node's blocks, each via that node, into its kernel.
    const want: string[] = [];
    for (const n of s.nodes) {
      for (const b of await blocksOf(t, n.name)) {
        want.push(`${b} via ${b.includes(":") ? n.ipv6 : n.ipv4}`);
      }
    }
    using lab = (await import("../lab/topology.ts")).labOpen(t.name);
    assertEquals(await birdRoutes(lab.ns), want.sort());
    // The nodes peer with the router only: two sessions (IPv4, IPv6), both established.
    const st = await t.lab.status(t.name);
    for (const n of st.nodes) {
      assertEquals(
        n.bgp!.map((b) => [b.name, b.established]).sort(),
        [["peer1_v4", true], ["peer2_v6", true]],
        n.name,
      );
    }
    assertEquals(st.router!.bgp.filter((b) => b.established).length, 8, "4 nodes x 2 families");
  },
});

Deno.test({
  ...opts,
  name:
    `bgp: a router that stops speaking BGP is reported: session not established in status and metrics, the agent not ready after the hold time${skip}`,
  async fn() {
    await using t = await testLab({
      nodes: 2,
      underlay: "routed",
      bgpRouter: "bird",
      extraConfig: { ...BGP, bgpNodeMesh: false, bgpHoldTime: "3s" },
    });
    const ns = t.node("node1");
    const ready = async () =>
      (await runCommand(ns, "curl", {
        args: ["-s", "--max-time", "2", "http://127.0.0.1:9753/readyz?verbose"],
      })).stdout;
    assertMatch(await ready(), /readyz check passed/);
    // The router's BIRD goes: a router that does not speak BGP.
    Deno.kill(t.state().bgpRouter!.pid, "SIGKILL");
    await within(30_000, "node1 not ready, naming the idle session", async () => {
      return /\[-\]agent not ready: bgp peer1_v4 172\.31\.0\.1 \(172\.31\.0\.1\)/.test(
        await ready(),
      );
    });
    assertEquals(await metric(ns, "ohno_ready"), 1, "the gauge says the agent once got ready");
    const m = await runCommand(ns, "curl", {
      args: ["-s", "--max-time", "2", "http://127.0.0.1:9753/metrics"],
    });
    assertMatch(
      m.stdout,
      /ohno_bgp_session_established\{session="peer1_v4",peer="172\.31\.0\.1",neighbor="172\.31\.0\.1"\} 0/,
    );
    const st = await t.lab.status(t.name);
    const b = st.nodes[0]!.bgp!.find((x) => x.name === "peer1_v4")!;
    assertEquals(b.established, false);
    assert(["Active", "Connect", "Idle"].includes(b.state), b.state);
  },
});

Deno.test({
  ...opts,
  name: `bgp: BIRD killed is restarted by the agent (logged, counted), pings come back${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2, extraConfig: BGP });
    const pods = await podPerNode(t);
    assertEquals(await pingAll(t, pods), []);
    const old = birdPid(t, "node1");
    Deno.kill(old, "SIGKILL");
    await within(30_000, "a new BIRD on node1", () => {
      try {
        const pid = birdPid(t, "node1");
        return Promise.resolve(pid !== old && processAlive(pid));
      } catch {
        return Promise.resolve(false);
      }
    });
    await within(
      30_000,
      "the restart counted",
      async () => (await metric(t.node("node1"), "ohno_bgp_bird_restarts_total")) === 1,
    );
    const log = Deno.readTextFileSync(`${t.state().nodes[0]!.dir}/daemon.log`);
    assertMatch(log, /bird is not running; starting it again/);
    await within(60_000, "pings come back", async () => (await pingAll(t, pods)).length === 0);
  },
});

Deno.test({
  ...opts,
  name:
    `bgp node mesh with the router on the routed lab; a removed node's routes go from every node and from the router; --cleanup stops BIRD and leaves none of its routes${skip}`,
  async fn() {
    await using t = await testLab({
      nodes: 3,
      underlay: "routed",
      bgpRouter: "bird",
      extraConfig: BGP,
    });
    const pods = await podPerNode(t);
    assertEquals(await pingAll(t, pods), []);
    const gone = await blocksOf(t, "node3");
    const n3 = t.state().nodes[2]!;
    // The mesh and the router at once: node1 peers with node2, node3 and its router; node3
    // shares its subnet, so its blocks are reached straight through it (learned over the
    // mesh), node2's through the router (the next hop resolved through the default route).
    const st = await t.lab.status(t.name);
    assertEquals(
      st.nodes[0]!.bgp!.map((b) => [b.name, b.established]),
      [
        ["node_node2_v4", true],
        ["node_node2_v6", true],
        ["node_node3_v4", true],
        ["node_node3_v6", true],
        ["peer1_v4", true],
        ["peer2_v6", true],
      ],
    );
    const r1 = await birdRoutes(t.node("node1"));
    for (const b of gone) {
      assert(r1.includes(`${b} via ${b.includes(":") ? n3.ipv6 : n3.ipv4}`), r1.join("\n"));
    }
    for (const b of await blocksOf(t, "node2")) {
      assert(
        r1.includes(`${b} via ${b.includes(":") ? "fd00:172:31::1" : "172.31.0.1"}`),
        r1.join("\n"),
      );
    }
    using lab = (await import("../lab/topology.ts")).labOpen(t.name);
    const holds = async (ns: Netns) =>
      (await birdRoutes(ns)).some((r) => gone.some((b) => r.startsWith(`${b} `)));
    for (const ns of [t.node("node1"), t.node("node2"), lab.ns]) assert(await holds(ns));

    // node3 leaves: its agent stops, --cleanup stops its BIRD, its blocks are released.
    await t.lab.podDel(t.name, "p3");
    await t.lab.stopAgent(t.name, "node3");
    const pid = birdPid(t, "node3");
    const r = await runCommand(t.node("node3"), OHNO, {
      args: ["daemon", "--cleanup", "--config", `${n3.dir}/ohno.json`],
    });
    assertEquals(r.code, 0, r.stderr);
    assertEquals(processAlive(pid), false, "BIRD stopped");
    assertEquals(await birdRoutes(t.node("node3")), [], "no route of BIRD's left on node3");
    const rel = await t.lab.ipam(t.name, ["release", "--node", "node3"]);
    assertEquals(rel.code, 0, rel.stderr);
    for (
      const [who, ns] of [["node1", t.node("node1")], ["node2", t.node("node2")], [
        "router",
        lab.ns,
      ]] as const
    ) {
      await within(30_000, `${who} forgets node3's blocks`, async () => !(await holds(ns)));
    }
    assertEquals(await pingAll(t, ["p1", "p2"]), []);
  },
});

Deno.test({
  ...opts,
  name:
    `bgp route reflectors on the routed lab: two reflectors, the other nodes peer only with them (and the router), every pod pings${skip}`,
  async fn() {
    const RR = { bgpRouteReflector: true };
    // Every node in AS 64512 (reflection is iBGP). The router (AS 65000) forwards between the
    // subnets, but the nodes refuse what it passes on (their own AS is in the path): they
    // learn each other's blocks only through the reflectors.
    await using t = await testLab({
      nodes: 4,
      underlay: "routed",
      bgpRouter: "bird",
      extraConfig: { ...BGP, bgpNodeMesh: false, bgpAsNumber: 64512 },
      nodeConfig: { node1: RR, node2: RR },
    });
    const pods = await podPerNode(t);
    assertEquals(await pingAll(t, pods), []);
    const st = await t.lab.status(t.name);
    const peersOf = (node: string) =>
      [
        ...new Set(
          st.nodes.find((n) => n.name === node)!.bgp!.filter((b) => b.name.startsWith("node_"))
            .map((b) => b.peer),
        ),
      ].sort();
    assertEquals(peersOf("node3"), ["node1", "node2"]);
    assertEquals(peersOf("node4"), ["node1", "node2"]);
    assertEquals(peersOf("node1"), ["node2", "node3", "node4"]);
    assert(st.nodes.every((n) => n.bgp!.every((b) => b.established)), JSON.stringify(st.nodes));
    // node3 (subnet 0) learned node4's blocks (subnet 1) through a reflector: the next hop
    // node4 resolved through node3's gateway; node1's (same subnet) straight via node1.
    const s = t.state();
    const r3 = await birdRoutes(t.node("node3"));
    for (const b of await blocksOf(t, "node4")) {
      assert(
        r3.includes(`${b} via ${b.includes(":") ? "fd00:172:31::1" : "172.31.0.1"}`),
        r3.join("\n"),
      );
    }
    // BIRD's own view: the route BIRD chose came reflected (originator node4, a cluster list).
    const v4 = (await blocksOf(t, "node4")).find((b) => !b.includes(":"))!;
    const show = await runCommand(t.node("node3"), "birdc", {
      args: ["-s", `${s.nodes[2]!.dir}/run/bird.ctl`, "show", "route", v4, "all"],
    });
    assertMatch(
      show.stdout,
      new RegExp(`BGP\\.originator_id: ${s.nodes[3]!.ipv4.replaceAll(".", "\\.")}`),
    );
    assertMatch(show.stdout, /BGP\.cluster_list: /);
    const n1 = s.nodes[0]!;
    for (const b of await blocksOf(t, "node1")) {
      assert(r3.includes(`${b} via ${b.includes(":") ? n1.ipv6 : n1.ipv4}`), r3.join("\n"));
    }
  },
});

Deno.test({
  ...opts,
  name:
    `bgp: agent SIGTERM and restart during a ping flood loses no more than a second; BIRD keeps running and is adopted${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2, extraConfig: BGP });
    await podPerNode(t);
    const s = t.state();
    const bird = birdPid(t, "node1");
    using p1 = Netns.named(s.pods["p1"]!.netns);
    const INTERVAL = 0.02;
    const flood = runCommand(p1, "ping", {
      args: ["-q", "-i", String(INTERVAL), "-W", "1", "-w", "25", s.pods["p2"]!.ips[0]!],
    });
    await new Promise((r) => setTimeout(r, 2000));
    await t.lab.stopAgent(t.name, "node1");
    await t.lab.stopAgent(t.name, "node2");
    await t.lab.startAgent(t.name, "node1");
    await t.lab.startAgent(t.name, "node2");
    const r = await flood;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    assert(m, r.stdout);
    const lost = Number(m[1]) - Number(m[2]);
    assert(Number(m[1]) > 200, r.stdout);
    assert(lost * INTERVAL <= 1, `lost ${lost} of ${m[1]}: ${r.stdout}`);
    assertEquals(birdPid(t, "node1"), bird, "the same BIRD");
    assertMatch(
      Deno.readTextFileSync(`${s.nodes[0]!.dir}/daemon.log`),
      /bird: adopted the running BIRD/,
    );
  },
});

Deno.test({
  ...opts,
  name:
    `bgp: a node that drops off the network (no word to its peers) has its routes withdrawn by the hold timer (graceful restart on)${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 3, extraConfig: { ...BGP, bgpHoldTime: "3s" } });
    const gone = await blocksOf(t, "node3");
    const holds = async () =>
      (await birdRoutes(t.node("node1"))).some((r) => gone.some((b) => r.startsWith(`${b} `)));
    assert(await holds());
    // node3's link goes down: no FIN, no NOTIFICATION; node1 must notice by the hold timer.
    const r = await runCommand(t.node("node3"), "ip", { args: ["link", "set", "eth0", "down"] });
    assertEquals(r.code, 0, r.stderr);
    // BIRD treats an expired hold timer as a hard error (no graceful-restart grace for the
    // peer): the routes go after the hold time, 3 s here.
    await within(30_000, "node1 drops node3's routes", async () => !(await holds()));
    // node2's routes stay.
    const n2 = await blocksOf(t, "node2");
    const r1 = await birdRoutes(t.node("node1"));
    assert(n2.every((b) => r1.some((x) => x.startsWith(`${b} `))), r1.join("\n"));
  },
});

Deno.test({
  ...opts,
  name:
    `switching a live node from bgp to host-gw stops BIRD and leaves none of its routes; and back to bgp leaves none of host-gw's${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2, extraConfig: BGP });
    const pods = await podPerNode(t);
    const s = t.state();
    const birds = s.nodes.map((n) => birdPid(t, n.name));
    const switchTo = (backend: string) => t.lab.restartAgents(t.name, { backend });
    await switchTo("host-gw");
    assertEquals(birds.map((p) => processAlive(p)), [false, false]);
    await within(
      20_000,
      "host-gw routes on both nodes",
      async () => (await t.routes("node1")).length === 2 && (await t.routes("node2")).length === 2,
    );
    assertEquals(await birdRoutes(t.node("node1")), []);
    assertEquals(await birdRoutes(t.node("node2")), []);
    assertEquals(await pingAll(t, pods), []);

    // Back to bgp: host-gw's routes (ohno's protocol) go, or they would shadow BIRD's.
    await switchTo("bgp");
    const n2 = await blocksOf(t, "node2");
    await within(20_000, "BIRD's routes to node2's blocks on node1", async () => {
      const r1 = await birdRoutes(t.node("node1"));
      return n2.every((b) => r1.some((x) => x.startsWith(`${b} `)));
    });
    assertEquals(await t.routes("node1"), [], "no host-gw route left on node1");
    assertEquals(await t.routes("node2"), [], "no host-gw route left on node2");
    assertEquals(await pingAll(t, pods), []);
  },
});
