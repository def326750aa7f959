/**
 * The host-gw backend against the real kernel: three "node" namespaces on the lab's
 * underlay bridge, routes in both families, repair of hand-deleted routes, removal of
 * vanished peers, foreign routes untouched, and pods on different nodes pinging each
 * other through the routes.
 */
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import { TEST_NETNS_PREFIX } from "./support/netns.ts";
import { planPeers, wirePlannedPod } from "./support/pods.ts";
import { ip, ipJson, type IpRoute } from "../netns/ip.ts";
import { type Netns, runCommand } from "../netns/netns.ts";
import { labUp } from "../lab/topology.ts";
import { HostGwBackend, OHNO_ROUTE_PROTOCOL } from "../daemon/routing/hostgw.ts";
import { RouteSync } from "../daemon/routing/sync.ts";
import type { Peer, ReconcileReport } from "../daemon/routing/types.ts";

const PREFIX = `${TEST_NETNS_PREFIX}${Deno.pid}-hg-`;
let labs = 0;

/** Node i (1-based) owns 10.244.i.0/24 and fd10:244:0:i::/64. */
async function routes(ns: Netns): Promise<string[]> {
  const v4 = await ipJson<IpRoute[]>(["-4", "route", "show", "table", "main"], { netns: ns });
  const v6 = await ipJson<IpRoute[]>(["-6", "route", "show", "table", "main"], { netns: ns });
  return [...v4, ...v6]
    .filter((r) => !/^(fe80|ff00)/.test(r.dst))
    .map((r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""} proto ${r.protocol ?? "boot"}`)
    .sort();
}

async function ohnoRoutes(ns: Netns): Promise<string[]> {
  return (await routes(ns)).filter((r) => r.endsWith(`proto ${OHNO_ROUTE_PROTOCOL}`));
}

/** Polls until `check` holds; fails after `ms` with the last value. */
async function eventually<T>(
  what: string,
  get: () => Promise<T>,
  check: (v: T) => boolean,
  ms = 5000,
) {
  const until = Date.now() + ms;
  let v = await get();
  while (!check(v)) {
    if (Date.now() > until) {
      throw new Error(`${what}: not within ${ms} ms; last: ${JSON.stringify(v)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
    v = await get();
  }
  return v;
}

function total(r: ReconcileReport): number {
  return r.programmed[4] + r.programmed[6];
}

Deno.test("host-gw: routes in both families, a hand-deleted route comes back, a removed peer's routes go, foreign routes stay", async () => {
  await using lab = await labUp({ name: `hg${labs++}`, nodes: 3, prefix: PREFIX });
  const [n1, n2, n3] = planPeers(lab) as [Peer, Peer, Peer];
  const ns1 = lab.nodes[0]!.ns;
  // Someone else's routes: one unrelated, one static.
  await ip(["route", "add", "10.99.0.0/16", "via", "172.31.0.13", "proto", "static"], {
    netns: ns1,
  });
  await ip(["-6", "route", "add", "fd99::/64", "via", "fd00:172:31::12"], { netns: ns1 });
  const foreign = (await routes(ns1)).filter((r) => !r.endsWith(`proto ${OHNO_ROUTE_PROTOCOL}`));

  const sync = new RouteSync({
    backend: new HostGwBackend({ netns: ns1 }),
    local: n1,
    peers: [n2, n3],
    resyncPeriodMs: 300,
  });
  const stop = new AbortController();
  const running = sync.run(stop.signal);
  try {
    const first = await sync.synced;
    assertEquals(total(first), 4);
    assertEquals(first.added.length, 4);
    const want = [
      "10.244.2.0/24 via 172.31.0.12 proto 111",
      "10.244.3.0/24 via 172.31.0.13 proto 111",
      "fd10:244:0:2::/64 via fd00:172:31::12 proto 111",
      "fd10:244:0:3::/64 via fd00:172:31::13 proto 111",
    ];
    assertEquals(await ohnoRoutes(ns1), want);

    // By hand: delete one v4 and one v6 route; the next periodic reconcile restores them.
    await ip(["route", "del", "10.244.2.0/24"], { netns: ns1 });
    await ip(["-6", "route", "del", "fd10:244:0:3::/64"], { netns: ns1 });
    await eventually("hand-deleted routes restored", () => ohnoRoutes(ns1), (r) => r.length === 4);
    assertEquals(await ohnoRoutes(ns1), want);

    // node3 leaves the cluster: its routes disappear (an event wakes the loop at once).
    sync.apply([{ type: "delete", node: "node3" }]);
    await eventually("node3's routes removed", () => ohnoRoutes(ns1), (r) => r.length === 2, 5000);
    assertEquals(await ohnoRoutes(ns1), want.filter((r) => !/244(\.|:0:)3/.test(r)));
    assertEquals((await routes(ns1)).filter((r) => !r.endsWith("proto 111")), foreign);
  } finally {
    stop.abort();
    await running;
  }
  // Routes stay when the loop stops (a restarted agent resyncs, it does not rebuild).
  assertEquals((await ohnoRoutes(ns1)).length, 2);
  // cleanup (ohno daemon --cleanup) removes ohno's routes only.
  assertEquals(await new HostGwBackend({ netns: ns1 }).cleanup(), 2);
  assertEquals(await ohnoRoutes(ns1), []);
  assertEquals(await routes(ns1), foreign);
});

Deno.test("host-gw: routes of peers that vanished while the agent was down are removed at start", async () => {
  await using lab = await labUp({ name: `hg${labs++}`, nodes: 3, prefix: PREFIX });
  const [n1, n2, n3] = planPeers(lab) as [Peer, Peer, Peer];
  const ns1 = lab.nodes[0]!.ns;
  await new HostGwBackend({ netns: ns1 }).reconcile({ local: n1, peers: [n2, n3] });
  assertEquals((await ohnoRoutes(ns1)).length, 4);
  // The agent is restarted; node3 was deleted meanwhile. A fresh backend knows nothing
  // but what the kernel holds.
  const report = await new HostGwBackend({ netns: ns1 }).reconcile({ local: n1, peers: [n2] });
  assertEquals(report.deleted.map((d) => d.dst).sort(), ["10.244.3.0/24", "fd10:244:0:3::/64"]);
  assertEquals(report.unchanged, 2);
  assertEquals(await ohnoRoutes(ns1), [
    "10.244.2.0/24 via 172.31.0.12 proto 111",
    "fd10:244:0:2::/64 via fd00:172:31::12 proto 111",
  ]);
  // Converged: another reconcile changes nothing.
  const again = await new HostGwBackend({ netns: ns1 }).reconcile({ local: n1, peers: [n2] });
  assertEquals([again.added.length, again.replaced.length, again.deleted.length, again.unchanged], [
    0,
    0,
    0,
    2,
  ]);
});

Deno.test("host-gw: a foreign route for a peer block is left alone and reported; a moved peer's route is replaced", async () => {
  await using lab = await labUp({ name: `hg${labs++}`, nodes: 3, prefix: PREFIX });
  const [n1, n2, n3] = planPeers(lab) as [Peer, Peer, Peer];
  const ns1 = lab.nodes[0]!.ns;
  await ip(["route", "add", "10.244.3.0/24", "via", "172.31.0.12", "proto", "static"], {
    netns: ns1,
  });
  const backend = new HostGwBackend({ netns: ns1 });
  const r = await backend.reconcile({ local: n1, peers: [n2, n3] });
  assertEquals(r.conflicts.map((c) => [c.route.dst, c.foreign.protocol, c.foreign.via]), [[
    "10.244.3.0/24",
    "static",
    "172.31.0.12",
  ]]);
  assert((await routes(ns1)).includes("10.244.3.0/24 via 172.31.0.12 proto static"));
  assertEquals(total(r), 3);
  // node2 moves to another underlay address (the old one is gone): replace in place.
  await ip(["addr", "add", "172.31.0.52/24", "dev", "eth0"], { netns: lab.nodes[1]!.ns });
  const moved = await backend.reconcile({
    local: n1,
    peers: [{ ...n2, ips: ["172.31.0.52", n2.ips[1]!] }, n3],
  });
  assertEquals(moved.replaced.map((x) => `${x.dst} ${x.via}`), ["10.244.2.0/24 172.31.0.52"]);
  assert((await ohnoRoutes(ns1)).includes("10.244.2.0/24 via 172.31.0.52 proto 111"));
});

Deno.test("host-gw: a next hop the kernel refuses fails alone; the other routes are programmed", async () => {
  await using lab = await labUp({ name: `hg${labs++}`, nodes: 2, prefix: PREFIX });
  const [n1, n2] = planPeers(lab) as [Peer, Peer];
  const ns1 = lab.nodes[0]!.ns;
  // No route at all to 192.0.2.0/24 in the lab: the kernel rejects that gateway.
  await ip(["route", "del", "default"], { netns: ns1 });
  const far: Peer = { node: "far", ips: ["192.0.2.7"], blocks: ["10.244.9.0/24"] };
  const r = await new HostGwBackend({ netns: ns1 }).reconcile({ local: n1, peers: [far, n2] });
  assertEquals(r.failed.map((f) => [f.dst, f.node]), [["10.244.9.0/24", "far"]]);
  assertEquals(r.added.map((a) => a.dst).sort(), ["10.244.2.0/24", "fd10:244:0:2::/64"]);
  assertEquals((await ohnoRoutes(ns1)).length, 2);
});

Deno.test("host-gw: pods on different nodes ping each other through the routes, v4 and v6", async () => {
  await using lab = await labUp({ name: `hg${labs++}`, nodes: 3, prefix: PREFIX });
  const nodes = planPeers(lab);
  const pods = [];
  try {
    for (const [i, n] of lab.nodes.entries()) {
      pods.push(await wirePlannedPod(n.ns, i + 1, `vethp${i + 1}`));
    }
    const [p1, p2, p3] = pods as [typeof pods[0], typeof pods[0], typeof pods[0]];
    // Before routes: cross-node traffic goes to the lab namespace and dies there.
    const before = await runCommand(p1.ns, "ping", { args: ["-c", "1", "-W", "1", p2.ipv4] });
    assert(before.code !== 0, "no cross-node path before host-gw routes");
    await Promise.all(lab.nodes.map((n, i) =>
      new HostGwBackend({ netns: n.ns }).reconcile({
        local: nodes[i]!,
        peers: nodes.filter((_, j) => j !== i),
      })
    ));
    // Every directed pair: each node routes to both others, each answers back.
    const pairs = [[p1, p2], [p1, p3], [p2, p1], [p2, p3], [p3, p1], [p3, p2]] as const;
    for (const [from, to] of pairs) {
      for (const addr of [to.ipv4, to.ipv6]) {
        const r = await runCommand(from.ns, "ping", { args: ["-c", "1", "-W", "2", addr] });
        assertEquals(r.code, 0, `ping ${addr}: ${r.stdout}${r.stderr}`);
      }
    }
  } finally {
    for (const p of pods) await p[Symbol.asyncDispose]();
  }
});

Deno.test("host-gw: a bad protocol number is refused", () => {
  assertThrows(() => new HostGwBackend({ protocol: 2 }), RangeError, "5-255");
});
