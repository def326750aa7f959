/**
 * Bridge mode against the real kernel: pods reach each other and the gateway over IPv4
 * and IPv6, concurrent ADD/DEL stay consistent, DEL forgives what is already gone, and a
 * failure after IPAM leaves nothing behind.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import { ip, ipJson, type IpLink, type IpRoute } from "../netns/ip.ts";
import { runCommand } from "../netns/netns.ts";
import { tempNetnsSet } from "./support/netns.ts";

function addrOf(r: { json?: Record<string, unknown> | undefined }, fam: 4 | 6): string {
  const ips = (r.json?.ips ?? []) as { address: string }[];
  const a = ips.find((i) => i.address.includes(":") === (fam === 6));
  assert(a, `no IPv${fam} address in ${JSON.stringify(r.json)}`);
  return a.address.split("/")[0]!;
}

async function ping(ns: { ns: import("../netns/netns.ts").Netns }, target: string) {
  const r = await runCommand(ns.ns, "ping", { args: ["-c", "1", "-W", "2", target] });
  assertEquals(r.code, 0, `ping ${target}: ${r.stdout}${r.stderr}`);
}

Deno.test("two pods on the bridge ping each other and the gateway over IPv4 and IPv6", async () => {
  await using node = await cniNode();
  const a = await node.pod("a");
  const b = await node.pod("b");
  const ra = await node.add(a, "pod-a");
  const rb = await node.add(b, "pod-b");
  await ping(a, addrOf(rb, 4));
  await ping(b, addrOf(ra, 4));
  await ping(a, addrOf(rb, 6));
  await ping(b, addrOf(ra, 6));
  await ping(a, "10.88.0.1");
  await ping(a, "fd00:88::1");
  // Default routes point at the bridge's gateway addresses in both families.
  const r4 = await ipJson<IpRoute[]>(["-4", "route", "show", "default"], { netns: a.ns });
  const r6 = await ipJson<IpRoute[]>(["-6", "route", "show", "default"], { netns: a.ns });
  assertEquals([r4[0]?.gateway, r6[0]?.gateway], ["10.88.0.1", "fd00:88::1"]);
  // Forwarding is on in the node's namespace, not in the machine's.
  const fwd = await runCommand(node.host.ns, "cat", { args: ["/proc/sys/net/ipv4/ip_forward"] });
  assertEquals(fwd.stdout.trim(), "1");
});

Deno.test("the pod interface gets the MTU of the host's default-route interface", async () => {
  await using node = await cniNode({ network: "mtu" });
  const p = await node.pod();
  await runCommand(node.host.ns, "ip", {
    args: ["link", "add", "uplink0", "mtu", "1400", "type", "veth", "peer", "name", "uplink1"],
  });
  await runCommand(node.host.ns, "ip", { args: ["link", "set", "uplink0", "up"] });
  await runCommand(node.host.ns, "ip", {
    args: ["addr", "add", "192.0.2.10/24", "dev", "uplink0"],
  });
  await runCommand(node.host.ns, "ip", {
    args: ["route", "add", "default", "via", "192.0.2.1", "dev", "uplink0", "onlink"],
  });
  await node.add(p, "mtu-pod");
  const l = await ipJson<IpLink[]>(["link", "show", "dev", "eth0"], { netns: p.ns });
  assertEquals(l[0]?.mtu, 1400);
});

Deno.test("a configured MTU, MAC and static address are honoured", async () => {
  await using node = await cniNode({ network: "static" });
  const p = await node.pod();
  const r = await node.call({
    command: "ADD",
    containerID: "static-pod",
    netns: p.path,
    ifname: "eth0",
    args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.88.0.77",
    config: node.conf("1.0.0", { mtu: 1280, runtimeConfig: { mac: "0a:58:0a:58:00:4d" } }),
  });
  assertEquals(r.code, 0, r.stdout);
  assertEquals(addrOf(r, 4), "10.88.0.77");
  const l = await ipJson<IpLink[]>(["link", "show", "dev", "eth0"], { netns: p.ns });
  assertEquals([l[0]?.mtu, l[0]?.address], [1280, "0a:58:0a:58:00:4d"]);
});

Deno.test("32 concurrent ADDs get distinct addresses; 32 concurrent DELs leave nothing", async () => {
  await using node = await cniNode({ network: "conc" });
  await using pods = await tempNetnsSet(32, "cc");
  const clean = await node.state();
  const adds = await Promise.all(pods.map((p, i) => node.add(p, `conc-${i}`)));
  const v4 = adds.map((r) => addrOf(r, 4));
  const v6 = adds.map((r) => addrOf(r, 6));
  assertEquals(new Set(v4).size, 32);
  assertEquals(new Set(v6).size, 32);
  assertEquals(node.allocations().length, 64);
  const ports = await ipJson<IpLink[]>(["link", "show", "master", node.bridge], {
    netns: node.host.ns,
  });
  assertEquals(ports.length, 32);
  const dels = await Promise.all(pods.map((p, i) => node.del(p, `conc-${i}`)));
  for (const d of dels) assertEquals([d.code, d.stdout], [0, ""], d.stdout);
  const after = await node.state();
  assertEquals(after.allocations, []);
  assertEquals(after.links.filter((l) => !clean.links.includes(l)), [node.bridge]);
});

Deno.test("DEL forgives what is already gone", async (t) => {
  await using node = await cniNode({ network: "delok" });
  const p = await node.pod();
  await node.add(p, "del-pod");
  await t.step("twice in a row", async () => {
    for (let i = 0; i < 2; i++) {
      const r = await node.del(p, "del-pod");
      assertEquals([r.code, r.stdout], [0, ""], r.stdout);
    }
    assertEquals(node.allocations(), []);
  });
  await t.step("after the netns is gone", async () => {
    const q = await node.pod("gone");
    await node.add(q, "gone-pod");
    const path = q.path;
    await q[Symbol.asyncDispose]();
    const r = await node.call({
      command: "DEL",
      containerID: "gone-pod",
      netns: path,
      ifname: "eth0",
      config: node.conf(),
    });
    assertEquals([r.code, r.stdout], [0, ""], r.stdout);
    assertEquals(node.allocations(), []);
  });
  await t.step("with an empty CNI_NETNS (ctr after the task exited)", async () => {
    const q = await node.pod("empty");
    await node.add(q, "empty-pod");
    const r = await node.del(undefined, "empty-pod");
    assertEquals([r.code, r.stdout], [0, ""], r.stdout);
    assertEquals(node.allocations(), []);
    const links = await ipJson<IpLink[]>(["link", "show"], { netns: q.ns });
    assertEquals(links.map((l) => l.ifname), ["lo"], "the pod end went with the host end");
  });
  await t.step("for a container it never saw", async () => {
    const r = await node.del(undefined, "never-seen");
    assertEquals([r.code, r.stdout], [0, ""], r.stdout);
  });
});

for (const point of ["after-ipam", "after-host", "after-pod"]) {
  Deno.test(`a failure ${point.replace("-", " ")} rolls back: no allocation, no veth`, async () => {
    await using node = await cniNode({ network: `fault${point.replaceAll("-", "")}` });
    const p = await node.pod();
    await node.add(p, "first"); // the bridge exists; the failing pod must not disturb it
    const before = await node.state();
    const r = await node.call({
      command: "ADD",
      containerID: "faulty",
      netns: p.path,
      ifname: "net1",
      config: node.conf(),
      env: { OHNO_TEST_FAULT: point },
    });
    assertEquals([r.code, r.json?.code], [1, 999]);
    assertMatch(String(r.json?.msg), new RegExp(point));
    assertEquals(await node.state(), before);
    const podLinks = await ipJson<IpLink[]>(["link", "show"], { netns: p.ns });
    assertEquals(podLinks.map((l) => l.ifname).sort(), ["eth0", "lo"]);
  });
}

Deno.test("a failed first ADD does not even leave the bridge's pods half-wired", async () => {
  await using node = await cniNode({ network: "firstfail" });
  const p = await node.pod();
  const r = await node.call({
    command: "ADD",
    containerID: "first-fails",
    netns: p.path,
    ifname: "eth0",
    config: node.conf(),
    env: { OHNO_TEST_FAULT: "after-pod" },
  });
  assertEquals(r.json?.code, 999);
  const s = await node.state();
  assertEquals(s.allocations, []);
  assert(!s.links.some((l) => l.startsWith("veth")), s.links.join(","));
  // A retry succeeds.
  await node.add(p, "first-fails");
});

Deno.test("ipMasq adds one nftables table for the network and DEL of the last pod removes it", async () => {
  await using node = await cniNode({ network: "masq" });
  const p = await node.pod();
  const conf = node.conf("1.0.0", { ipMasq: true });
  const r = await node.call({
    command: "ADD",
    containerID: "m1",
    netns: p.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals(r.code, 0, r.stdout);
  const list = await runCommand(node.host.ns, "nft", { args: ["list", "ruleset"] });
  assertMatch(list.stdout, /ip saddr 10\.88\.0\.0\/24 ip daddr != 10\.88\.0\.0\/24 .*masquerade/);
  assertMatch(list.stdout, /ip6 saddr fd00:88::\/64 ip6 daddr != fd00:88::\/64 .*masquerade/);
  const d = await node.call({
    command: "DEL",
    containerID: "m1",
    netns: p.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals(d.code, 0, d.stdout);
  const after = await runCommand(node.host.ns, "nft", { args: ["list", "ruleset"] });
  assertEquals(after.stdout.trim(), "");
});

Deno.test("the node's own namespace as CNI_NETNS: ADD and CHECK are error 4, DEL leaves the host alone", async () => {
  await using node = await cniNode({ network: "hostns" });
  const h = node.host.ns;
  // The node's uplink is eth0 with the default route, as on a real host.
  await ip(["link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"], { netns: h });
  await ip(["link", "set", "dev", "eth0", "up"], { netns: h });
  await ip(["link", "set", "dev", "eth0peer", "up"], { netns: h });
  await ip(["addr", "add", "192.0.2.10/24", "dev", "eth0"], { netns: h });
  await ip(["route", "add", "default", "via", "192.0.2.1", "dev", "eth0"], { netns: h });
  const routes = async () =>
    (await ipJson<IpRoute[]>(["route", "show"], { netns: h })).map((r) =>
      `${r.dst} ${r.gateway ?? "-"} ${r.dev}`
    ).sort();
  const before = await node.state();
  const routesBefore = await routes();
  assert(routesBefore.includes("default 192.0.2.1 eth0"), routesBefore.join(","));

  // The plugin's namespace by its name, and by a path that only resolves to it inside the
  // plugin: identity, not path, decides.
  for (const netns of [node.host.path, "/proc/self/ns/net"]) {
    for (const ifname of ["eth1", "eth0"]) {
      const r = await node.call({ command: "ADD", containerID: "x", netns, ifname });
      assertEquals([r.code, r.json?.code], [1, 4], r.stdout);
      assertMatch(String(r.json?.msg), /own network namespace/);
    }
  }
  const chk = await node.call({
    command: "CHECK",
    containerID: "x",
    netns: node.host.path,
    ifname: "eth0",
    config: node.conf("1.0.0", {
      prevResult: { cniVersion: "1.0.0", ips: [{ address: "192.0.2.10/24" }] },
    }),
  });
  assertEquals(chk.json?.code, 4, chk.stdout);
  // DEL names no interface inside CNI_NETNS: only the ohno-named host veth and the
  // allocation of (container ID, ifname), so the host's eth0 is never a candidate.
  for (const ifname of ["eth0", "eth1"]) {
    const d = await node.call({ command: "DEL", containerID: "x", netns: node.host.path, ifname });
    assertEquals([d.code, d.stdout], [0, ""], d.stdout);
  }
  assertEquals(await node.state(), before);
  assertEquals(await routes(), routesBefore);
});

Deno.test("a bridge name held by a non-bridge link is error 7 naming it and its kind; the link is untouched", async () => {
  await using node = await cniNode({ network: "notbridge", bridge: "ext0" });
  const h = node.host.ns;
  await ip(["link", "add", "ext0", "type", "veth", "peer", "name", "ext1"], { netns: h });
  const p = await node.pod();
  const before = await node.state();
  const r = await node.call({ command: "ADD", containerID: "nb", netns: p.path, ifname: "eth0" });
  assertEquals([r.code, r.json?.code], [1, 7], r.stdout);
  assertMatch(String(r.json?.msg), /bridge "ext0" .*veth/);
  assertEquals(await node.state(), before);
  const ext = await ipJson<IpLink[]>(["link", "show", "dev", "ext0"], { netns: h });
  assert(!ext[0]?.flags.includes("UP"), `ext0 was set up: ${ext[0]?.flags}`);
  assertEquals(await ipJson<IpRoute[]>(["route", "show", "dev", "ext0"], { netns: h }), []);
  assertEquals((await ipJson<IpLink[]>(["link", "show"], { netns: p.ns })).length, 1);
});

Deno.test("an uplink MTU below 1280 with an IPv6 range is error 7 before the host is touched", async () => {
  await using node = await cniNode({ network: "mtu6" });
  const p = await node.pod();
  const h = node.host.ns;
  await ip(["link", "add", "uplink0", "mtu", "1200", "type", "veth", "peer", "name", "uplink1"], {
    netns: h,
  });
  await ip(["link", "set", "dev", "uplink0", "up"], { netns: h });
  await ip(["addr", "add", "192.0.2.10/24", "dev", "uplink0"], { netns: h });
  await ip(["route", "add", "default", "via", "192.0.2.1", "dev", "uplink0", "onlink"], {
    netns: h,
  });
  const before = await node.state();
  const r = await node.call({ command: "ADD", containerID: "m6", netns: p.path, ifname: "eth0" });
  assertEquals([r.code, r.json?.code], [1, 7], r.stdout);
  assertMatch(String(r.json?.msg), /mtu 1200 \(the uplink's\) is below 1280.*fd00:88::/);
  assertEquals(await node.state(), before);
});
