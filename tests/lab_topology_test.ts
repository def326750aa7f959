/**
 * The lab's underlay in namespaces: nodes reach each other, the gateway and the outside
 * host over IPv4 and IPv6; labs coexist; `labDown` finds a lab by name after a crash.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./support/assert.ts";
import { TEST_NETNS_PREFIX } from "./support/netns.ts";
import { ipJson, type IpRoute } from "../netns/ip.ts";
import { listNamedNetns } from "../netns/manage.ts";
import { runCommand } from "../netns/netns.ts";
import { sysctlGet } from "../netns/sysctl.ts";
import { labDown, labNamespaces, labOpen, labUp, listLabs } from "../lab/topology.ts";

const PREFIX = `${TEST_NETNS_PREFIX}${Deno.pid}-lt-`;

async function ping(ns: Parameters<typeof runCommand>[0], to: string): Promise<void> {
  const r = await runCommand(ns, "ping", { args: ["-c", "1", "-W", "2", to] });
  assertEquals(r.code, 0, `ping ${to}: ${r.stdout}${r.stderr}`);
}

Deno.test("a 3-node lab: nodes, gateway and the outside host reach each other on v4 and v6", async () => {
  await using lab = await labUp({ name: "topo", nodes: 3, prefix: PREFIX });
  assertEquals(lab.nodes.map((n) => n.name), ["node1", "node2", "node3"]);
  assertEquals(lab.nodes.map((n) => n.ipv4), ["172.31.0.11", "172.31.0.12", "172.31.0.13"]);
  assertEquals(lab.nodes.map((n) => n.ipv6), [
    "fd00:172:31::11",
    "fd00:172:31::12",
    "fd00:172:31::13",
  ]);
  assertEquals([lab.outside.ipv4, lab.outside.ipv6], ["172.31.0.200", "fd00:172:31::200"]);
  assertEquals(lab.gateway, { ipv4: "172.31.0.1", ipv6: "fd00:172:31::1" });
  assertEquals(lab.netns, `${PREFIX}topo`);
  assertEquals(lab.node("node2").netns, `${PREFIX}topo-node2`);

  const n1 = lab.nodes[0]!;
  await Promise.all([
    ping(n1.ns, lab.nodes[2]!.ipv4),
    ping(n1.ns, lab.nodes[2]!.ipv6),
    ping(n1.ns, lab.gateway.ipv4),
    ping(n1.ns, lab.outside.ipv6),
    ping(lab.outside.ns, lab.nodes[1]!.ipv4),
  ]);
  // Nodes forward and have a default route (into the lab namespace, which has no way out).
  assertEquals(sysctlGet("net.ipv4.ip_forward", { netns: n1.ns }), "1");
  assertEquals(sysctlGet("net.ipv6.conf.all.forwarding", { netns: n1.ns }), "1");
  const def = await ipJson<IpRoute[]>(["route", "show", "default"], { netns: n1.ns });
  assertEquals(def.map((r) => [r.gateway, r.dev]), [["172.31.0.1", "eth0"]]);
  const labRoutes = await ipJson<IpRoute[]>(["route", "show"], { netns: lab.ns });
  assert(!labRoutes.some((r) => r.dst === "default"), "the lab namespace has no default route");
  assertEquals(sysctlGet("net.ipv4.ip_forward", { netns: lab.ns }), "0");
  // The outside host has no route towards pod addresses.
  const out = await ipJson<IpRoute[]>(["route", "show"], { netns: lab.outside.ns });
  assertEquals(out.map((r) => r.dst), ["172.31.0.0/24"]);
});

Deno.test("two labs coexist with the same addresses; taking one down leaves the other", async () => {
  await using a = await labUp({ name: "a", nodes: 1, prefix: PREFIX });
  await using ab = await labUp({ name: "ab", nodes: 2, prefix: PREFIX });
  assertEquals(labNamespaces("a", PREFIX), [
    `${PREFIX}a-node1`,
    `${PREFIX}a-outside`,
    `${PREFIX}a`,
  ]);
  assertEquals(listLabs(PREFIX).sort(), ["a", "ab"]);
  await ping(a.nodes[0]!.ns, a.outside.ipv4);
  await ping(ab.nodes[0]!.ns, ab.nodes[1]!.ipv4);
  await a.down();
  assertEquals(labNamespaces("a", PREFIX), []);
  assertEquals(labNamespaces("ab", PREFIX).length, 4);
  await ping(ab.nodes[1]!.ns, ab.outside.ipv6);
});

Deno.test("a lab left behind by a crash is found by name, opened and removed", async () => {
  const lab = await labUp({ name: "crash", nodes: 2, prefix: PREFIX });
  try {
    lab.close(); // the process "dies": handles gone, namespaces left
    const again = labOpen("crash", { prefix: PREFIX });
    try {
      assertEquals(again.nodes.map((n) => `${n.name} ${n.ipv4} ${n.ipv6}`), [
        "node1 172.31.0.11 fd00:172:31::11",
        "node2 172.31.0.12 fd00:172:31::12",
      ]);
      await ping(again.node("node2").ns, again.outside.ipv4);
    } finally {
      again.close();
    }
    // A second up of the same lab is refused while it exists.
    await assertRejects(
      () => labUp({ name: "crash", nodes: 1, prefix: PREFIX }),
      Error,
      "already exists",
    );
  } finally {
    const removed = await labDown("crash", PREFIX);
    assertEquals(removed.length, 4);
  }
  assert(!listNamedNetns().some((n) => n.startsWith(`${PREFIX}crash`)));
  assertThrows(() => labOpen("crash", { prefix: PREFIX }), Error, "is not up");
  assertEquals(await labDown("crash", PREFIX), []);
});

Deno.test("bad lab names and sizes are refused before anything is made", async () => {
  for (const name of ["", "Has-Upper", "with-dash", "x".repeat(17)]) {
    await assertRejects(() => labUp({ name, nodes: 1, prefix: PREFIX }), TypeError, "lab name");
  }
  await assertRejects(
    () => labUp({ name: "big", nodes: 0, prefix: PREFIX }),
    RangeError,
    "nodes must be",
  );
  await assertRejects(
    () => labUp({ name: "tiny", nodes: 1, prefix: PREFIX, underlay4: "10.0.0.0/28" }),
    RangeError,
    "too small",
  );
  assertEquals(labNamespaces("big", PREFIX), []);
});
