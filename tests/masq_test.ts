/**
 * Masquerade against the real kernel: a pod behind node1 reaches the lab's outside host,
 * which sees node1's address; pod-to-pod traffic across nodes keeps the pod's address;
 * the table is replaced atomically and idempotently and removed by cleanup.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./support/assert.ts";
import { TEST_NETNS_PREFIX } from "./support/netns.ts";
import { planPeers, type TestPod, wirePlannedPod } from "./support/pods.ts";
import { startEcho, whoAmI } from "./support/tcpecho.ts";
import { runCommand } from "../netns/netns.ts";
import { labUp } from "../lab/topology.ts";
import { HostGwBackend } from "../daemon/routing/hostgw.ts";
import {
  applyMasquerade,
  masqueradeScript,
  readMasquerade,
  removeMasquerade,
} from "../daemon/masq.ts";

const PREFIX = `${TEST_NETNS_PREFIX}${Deno.pid}-mq-`;
const CLUSTER = ["10.244.0.0/16", "fd10:244::/48"];

Deno.test("masquerade: the outside host sees the node's address; pods across nodes see each other's", async () => {
  await using lab = await labUp({ name: "masq", nodes: 2, prefix: PREFIX });
  const peers = planPeers(lab);
  const pods: TestPod[] = [];
  try {
    for (const [i, n] of lab.nodes.entries()) {
      pods.push(await wirePlannedPod(n.ns, i + 1, `vethm${i + 1}`));
      await new HostGwBackend({ netns: n.ns }).reconcile({
        local: peers[i]!,
        peers: peers.filter((_, j) => j !== i),
      });
      await applyMasquerade({ netns: n.ns, clusterCIDRs: CLUSTER });
    }
    const [p1, p2] = pods as [TestPod, TestPod];
    const n1 = lab.nodes[0]!;

    await using outside = await startEcho(lab.outside.ns, 8080);
    assertEquals(await whoAmI(p1.ns, lab.outside.ipv4, outside.port), n1.ipv4);
    assertEquals(await whoAmI(p1.ns, lab.outside.ipv6, outside.port), n1.ipv6);

    await using inPod2 = await startEcho(p2.ns, 8081);
    assertEquals(await whoAmI(p1.ns, p2.ipv4, inPod2.port), p1.ipv4);
    assertEquals(await whoAmI(p1.ns, p2.ipv6, inPod2.port), p1.ipv6);

    // Without the table the outside host has no way back to a pod address: proof that
    // the translation, not some route, made the first exchange work.
    assert(await removeMasquerade({ netns: n1.ns }));
    const ping = await runCommand(p1.ns, "ping", {
      args: ["-c", "1", "-W", "1", lab.outside.ipv4],
    });
    assert(ping.code !== 0, "no reply without masquerade");
    assertEquals(await removeMasquerade({ netns: n1.ns }), false);
  } finally {
    for (const p of pods) await p[Symbol.asyncDispose]();
  }
});

Deno.test("masquerade: applying twice keeps one table with the same rules; a new CIDR list replaces it", async () => {
  await using lab = await labUp({ name: "masqi", nodes: 1, prefix: PREFIX });
  const ns = lab.nodes[0]!.ns;
  assertEquals(await readMasquerade({ netns: ns }), undefined);
  await applyMasquerade({ netns: ns, clusterCIDRs: CLUSTER });
  const listing = async () => (await runCommand(ns, "nft", { args: ["list", "ruleset"] })).stdout;
  const once = await listing();
  await applyMasquerade({ netns: ns, clusterCIDRs: CLUSTER });
  assertEquals(await listing(), once);
  assertEquals((once.match(/table inet ohno/g) ?? []).length, 1);
  assertEquals(await readMasquerade({ netns: ns }), {
    v4: ["10.244.0.0/16"],
    v6: ["fd10:244::/48"],
  });
  // Another table of someone else's is never touched.
  await runCommand(ns, "nft", { args: ["add", "table", "ip", "other"] });
  await applyMasquerade({ netns: ns, clusterCIDRs: ["10.250.0.0/16", "10.244.0.0/16"] });
  assertEquals(await readMasquerade({ netns: ns }), {
    v4: ["10.244.0.0/16", "10.250.0.0/16"],
    v6: [],
  });
  assertStringIncludes(await listing(), "table ip other");
  await removeMasquerade({ netns: ns });
  const after = await listing();
  assertStringIncludes(after, "table ip other");
  assert(!after.includes("table inet ohno"));
});

Deno.test("masquerade script: overlapping CIDRs are merged, families kept apart, bad input named", async () => {
  const s = masqueradeScript({ clusterCIDRs: ["10.244.1.0/24", "10.244.0.0/16", "10.244.0.0/16"] });
  assertStringIncludes(s, "elements = { 10.244.0.0/16 }");
  assert(!s.includes("cluster6"), "no IPv6 set without IPv6 CIDRs");
  assertStringIncludes(
    s,
    "ip saddr @cluster4 ip daddr != @cluster4 ip daddr != 224.0.0.0/4 masquerade\n",
  );
  assertStringIncludes(
    masqueradeScript({ clusterCIDRs: CLUSTER, fullyRandom: true }),
    "masquerade fully-random",
  );
  let err: unknown;
  try {
    masqueradeScript({ clusterCIDRs: ["10.244.0.0/33"] });
  } catch (e) {
    err = e;
  }
  assert(err instanceof RangeError && err.message.includes('"10.244.0.0/33"'), String(err));
  await assertRejects(
    () => applyMasquerade({ clusterCIDRs: CLUSTER, table: "bad name" }),
    TypeError,
    "table name",
  );
});
