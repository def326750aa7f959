/**
 * The routed lab underlay: nodes in two subnets joined by a router (the lab namespace)
 * that knows nothing about pod addresses. There host-gw connects pods only within a
 * subnet, and the agent says so (metrics, log) instead of failing silently.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { metric, testLab } from "./support/lab.ts";
import { etcdMissing } from "./support/etcd.ts";
import { ipJson, type IpRoute } from "../netns/ip.ts";
import { labOpen } from "../lab/topology.ts";
import { runCommand } from "../netns/netns.ts";
import { OHNO } from "./support/ohno.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const opts = { ignore: !!missing, sanitizeResources: false, sanitizeOps: false };

Deno.test({
  ...opts,
  name:
    `routed underlay, host-gw: pods connect within a subnet, not across; the agent reports the off-link next hop${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 3, underlay: "routed" });
    const s = t.state();
    assertEquals(s.underlay, "routed");
    // node1 and node3 share subnet 0; node2 is alone in subnet 1.
    assertEquals(s.nodes.map((n) => [n.name, n.subnet, n.ipv4, n.ipv6]), [
      ["node1", 0, "172.31.0.11", "fd00:172:31::11"],
      ["node2", 1, "172.31.1.12", "fd00:172:31:1::12"],
      ["node3", 0, "172.31.0.13", "fd00:172:31::13"],
    ]);
    // labOpen tells a routed lab by its bridges and gives the same addresses.
    using lab = labOpen(t.name);
    assertEquals(lab.underlay, "routed");
    assertEquals(lab.nodes.map((n) => n.ipv4), ["172.31.0.11", "172.31.1.12", "172.31.0.13"]);
    // The router knows the subnets and nothing else: no route to any pod address.
    const rr = [
      ...await ipJson<IpRoute[]>(["-4", "route", "show"], { netns: lab.ns }),
      ...await ipJson<IpRoute[]>(["-6", "route", "show"], { netns: lab.ns }),
    ].map((r) => r.dst);
    assert(rr.every((d) => /^(172\.31\.|fd00:172:31:|fe80::)/.test(d)), rr.join(" "));

    await t.lab.podAdd(t.name, "node1", "a");
    await t.lab.podAdd(t.name, "node2", "b");
    await t.lab.podAdd(t.name, "node3", "c");
    // Same subnet: host-gw works.
    for (const r of await t.lab.ping(t.name, "a", "c")) assert(r.ok, `a -> c ${r.ip}`);
    // Across subnets: no route for the other subnet's blocks, the router drops the rest.
    for (const r of await t.lab.ping(t.name, "a", "b")) assertEquals(r.ok, false, `a -> b ${r.ip}`);
    for (const r of await t.lab.ping(t.name, "b", "c")) assertEquals(r.ok, false, `b -> c ${r.ip}`);

    // node1 routes node3's blocks only; node2's next hops are refused as off-link.
    const routes = await t.routes("node1");
    assertEquals(routes.length, 2, routes.join("\n"));
    assert(routes.every((r) => /via (172\.31\.0\.13|fd00:172:31::13)$/.test(r)), routes.join("\n"));
    // Reported, not silent: in the metrics...
    assertEquals(await metric(t.node("node1"), "ohno_route_unreachable_next_hops"), 1);
    assertEquals(await metric(t.node("node1"), "ohno_routes_not_programmed"), 2);
    assertEquals(await metric(t.node("node2"), "ohno_route_unreachable_next_hops"), 2);
    assertEquals(await metric(t.node("node2"), "ohno_routes_not_programmed"), 4);
    // ...in `ohno lab status` (from each agent's /status), naming peer and next hop...
    const st = await t.lab.status(t.name);
    const hops = (node: string) =>
      st.nodes.find((n) => n.name === node)?.routing?.unreachableNextHops.map((u) =>
        `${u.node} ${u.via}`
      ).sort();
    assertEquals(hops("node1"), ["node2 172.31.1.12", "node2 fd00:172:31:1::12"]);
    assertEquals(hops("node3"), ["node2 172.31.1.12", "node2 fd00:172:31:1::12"]);
    assertEquals(hops("node2"), [
      "node1 172.31.0.11",
      "node1 fd00:172:31::11",
      "node3 172.31.0.13",
      "node3 fd00:172:31::13",
    ]);
    const cli = await runCommand(undefined, OHNO, { args: ["lab", "status", "--name", t.name] });
    assertEquals(cli.code, 0, cli.stderr);
    const lines = cli.stdout.split("\n").filter((l) => l.includes("unreachable next hop"));
    assertEquals(lines.length, 8, cli.stdout);
    assert(
      lines.some((l) =>
        /^node1\s+unreachable next hop\s+\S+ via 172\.31\.1\.12 \(node node2\)/.test(l)
      ),
      cli.stdout,
    );
    // ...and in the log, naming the peer, its next hop and what to do.
    const log = Deno.readTextFileSync(`${s.nodes[0]!.dir}/daemon.log`);
    for (const via of ["172.31.1.12", "fd00:172:31:1::12"]) {
      assertMatch(
        log,
        new RegExp(
          `next hop ${
            via.replaceAll(".", "\\.")
          } \\(node node2\\) is not on a link of this node.*vxlan`,
        ),
      );
    }
  },
});
