/**
 * The vxlan backend on the routed lab (nodes in two subnets behind a router that knows no
 * pod address): pods connect across subnets over IPv4 and IPv6, the kernel holds exactly
 * one route, neighbour and FDB entry per peer block/peer, and the state follows peers,
 * restarts and cleanup.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { dfPing, metric, pingAll, testLab, within } from "./support/lab.ts";
import { etcdMissing } from "./support/etcd.ts";
import { ip, ipJson, type IpRoute } from "../netns/ip.ts";
import { Netns, runCommand } from "../netns/netns.ts";
import { OHNO } from "./support/ohno.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const opts = { ignore: !!missing, sanitizeResources: false, sanitizeOps: false };
const VXLAN = { backend: "vxlan", vxlanDirectRouting: false };

interface KernelView {
  routes: string[];
  neigh: string[];
  fdb: string[];
  links: { ifname: string; address: string; mtu: number }[];
}

/** ohno's routes, the neighbours and FDB entries on its VXLAN devices, and the devices. */
async function kernel(ns: Netns): Promise<KernelView> {
  const routes: string[] = [];
  for (const f of ["-4", "-6"]) {
    for (const r of await ipJson<IpRoute[]>([f, "route", "show", "proto", "111"], { netns: ns })) {
      routes.push(
        `${r.dst} via ${r.gateway}${r.dev?.startsWith("ohno.vxlan") ? ` dev ${r.dev}` : ""}`,
      );
    }
  }
  const links =
    (await ipJson<{ ifname: string; address: string; mtu: number }[]>(["link", "show"], {
      netns: ns,
    })).filter((l) => l.ifname.startsWith("ohno.vxlan"))
      .map((l) => ({ ifname: l.ifname, address: l.address, mtu: l.mtu }));
  const neigh: string[] = [];
  const fdb: string[] = [];
  for (const l of links) {
    for (
      const n of await ipJson<{ dst: string; lladdr: string }[]>(
        ["neigh", "show", "dev", l.ifname],
        { netns: ns },
      )
    ) {
      neigh.push(`${l.ifname} ${n.dst} ${n.lladdr}`);
    }
    const r = await runCommand(ns, "bridge", { args: ["-j", "fdb", "show", "dev", l.ifname] });
    for (const f of JSON.parse(r.stdout || "[]") as { mac: string; dst?: string }[]) {
      fdb.push(`${l.ifname} ${f.mac} ${f.dst ?? "-"}`);
    }
  }
  return { routes: routes.sort(), neigh: neigh.sort(), fdb: fdb.sort(), links };
}

Deno.test({
  ...opts,
  name:
    `routed underlay, vxlan: every pod pings every other over IPv4 and IPv6 across subnets; one route, neighbour and FDB entry per peer${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 4, underlay: "routed", extraConfig: VXLAN });
    const pods: string[] = [];
    for (const n of ["node1", "node2", "node3", "node4"]) {
      await t.lab.podAdd(t.name, n, `p${n.slice(-1)}`);
      pods.push(`p${n.slice(-1)}`);
    }
    assertEquals(await pingAll(t, pods), []);

    const s = t.state();
    const k = await kernel(t.node("node1"));
    // Two devices (dual-stack underlay), each with the MAC the node published.
    assertEquals(k.links.map((l) => [l.ifname, l.mtu]), [["ohno.vxlan4", 1450], [
      "ohno.vxlan6",
      1430,
    ]]);
    // Three peers, each with an IPv4 and an IPv6 block: 6 routes through the devices
    // (IPv4 pods over the IPv4 underlay, IPv6 over IPv6), 6 neighbours, 3 FDB entries per device.
    assertEquals(k.routes.length, 6, k.routes.join("\n"));
    assert(k.routes.every((r) => / dev ohno\.vxlan[46]$/.test(r)), k.routes.join("\n"));
    assertEquals(k.neigh.length, 6, k.neigh.join("\n"));
    assertEquals(k.fdb.length, 6, k.fdb.join("\n"));
    for (const peer of s.nodes.slice(1)) {
      assert(
        k.fdb.some((f) => f.startsWith("ohno.vxlan4 ") && f.endsWith(` ${peer.ipv4}`)),
        k.fdb.join("\n"),
      );
      assert(
        k.fdb.some((f) => f.startsWith("ohno.vxlan6 ") && f.endsWith(` ${peer.ipv6}`)),
        k.fdb.join("\n"),
      );
    }
    assertEquals(await metric(t.node("node1"), "ohno_routes_not_programmed"), 0);
  },
});

Deno.test({
  ...opts,
  name:
    `vxlan directRouting: same-subnet peers get host-gw routes, the others vxlan, in the kernel's tables${skip}`,
  async fn() {
    await using t = await testLab({
      nodes: 4,
      underlay: "routed",
      extraConfig: { ...VXLAN, vxlanDirectRouting: true },
    });
    for (const n of ["node1", "node2", "node3", "node4"]) {
      await t.lab.podAdd(t.name, n, `p${n.slice(-1)}`);
    }
    assertEquals(await pingAll(t, ["p1", "p2", "p3", "p4"]), []);
    const s = t.state();
    const [, n2, n3, n4] = s.nodes;
    const k = await kernel(t.node("node1"));
    // node3 shares node1's subnet: plain routes via its underlay addresses, no device.
    const direct = k.routes.filter((r) => !r.includes(" dev "));
    assertEquals(direct.length, 2, k.routes.join("\n"));
    assert(
      direct.every((r) => r.endsWith(` via ${n3!.ipv4}`) || r.endsWith(` via ${n3!.ipv6}`)),
      direct.join("\n"),
    );
    // node2 and node4 are in the other subnet: through the VXLAN devices.
    const tunnel = k.routes.filter((r) => r.includes(" dev ohno.vxlan"));
    assertEquals(tunnel.length, 4, k.routes.join("\n"));
    assertEquals(k.neigh.length, 4, k.neigh.join("\n"));
    assertEquals(
      k.fdb.map((f) => f.split(" ")[2]).sort(),
      [n2!.ipv4, n4!.ipv4, n2!.ipv6, n4!.ipv6].sort(),
    );
  },
});

/** `ethtool -k`'s tx-checksum-ip-generic per ohno VXLAN device (ethtool is a dev package). */
async function txChecksum(ns: Netns): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const dev of ["ohno.vxlan4", "ohno.vxlan6"]) {
    const r = await runCommand(ns, "ethtool", { args: ["-k", dev] });
    assertEquals(r.code, 0, r.stderr);
    out[dev] = /^\s*tx-checksum-ip-generic: (on|off)/m.exec(r.stdout)?.[1] ?? "?";
  }
  return out;
}

Deno.test({
  ...opts,
  name:
    `vxlan: a removed peer's routes, neighbours and FDB entries go; kill -9 and restart keeps pods pinging, the VTEP MAC and TX checksum offload off${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 3, underlay: "routed", extraConfig: VXLAN });
    for (const n of ["node1", "node2", "node3"]) await t.lab.podAdd(t.name, n, `p${n.slice(-1)}`);
    assertEquals(await pingAll(t, ["p1", "p2", "p3"]), []);
    const s = t.state();
    const before = await kernel(t.node("node1"));
    assertEquals([before.routes.length, before.neigh.length, before.fdb.length], [4, 4, 4]);

    // TX checksum offload is off on both devices, as ethtool sees it.
    const ns1 = t.node("node1");
    assertEquals(await txChecksum(ns1), { "ohno.vxlan4": "off", "ohno.vxlan6": "off" });

    // kill -9 node1's agent and start it again: same MAC, same state, pods still ping.
    await t.lab.stopAgent(t.name, "node1", true);
    assertEquals(await pingAll(t, ["p1", "p2"]), [], "the data path outlives the agent");
    // While it is down someone turns offload back on: the restarted agent puts it right.
    for (const dev of ["ohno.vxlan4", "ohno.vxlan6"]) {
      const r = await runCommand(ns1, "ethtool", {
        args: ["-K", dev, "tx-checksum-ip-generic", "on"],
      });
      assertEquals(r.code, 0, r.stderr);
    }
    assertEquals(await txChecksum(ns1), { "ohno.vxlan4": "on", "ohno.vxlan6": "on" });
    await t.lab.startAgent(t.name, "node1");
    await within(20_000, "TX checksum offload off again", async () => {
      const c = await txChecksum(ns1);
      return c["ohno.vxlan4"] === "off" && c["ohno.vxlan6"] === "off";
    });
    const after = await kernel(t.node("node1"));
    assertEquals(after, before, "a restarted agent leaves the kernel state as it was");
    assertEquals(await pingAll(t, ["p1", "p2", "p3"]), []);

    // node3 leaves: its blocks and record released; node1 drops all it held for node3.
    await t.lab.podDel(t.name, "p3");
    await t.lab.stopAgent(t.name, "node3");
    const r = await t.lab.ipam(t.name, ["release", "--node", "node3"]);
    assertEquals(r.code, 0, r.stderr);
    const n3 = s.nodes[2]!;
    await within(20_000, "node1 forgets node3", async () => {
      const k = await kernel(t.node("node1"));
      return k.routes.length === 2 && k.neigh.length === 2 && k.fdb.length === 2;
    });
    const k = await kernel(t.node("node1"));
    assert(
      !k.fdb.some((f) => f.endsWith(` ${n3.ipv4}`) || f.endsWith(` ${n3.ipv6}`)),
      k.fdb.join("\n"),
    );
    assertEquals(await pingAll(t, ["p1", "p2"]), []);
  },
});

Deno.test({
  ...opts,
  name:
    `vxlan MTU auto: pods get underlay - 70, full-size DF packets cross subnets; ignoring the overhead fails${skip}`,
  async fn() {
    const UNDERLAY = 1400;
    await using t = await testLab({
      nodes: 2,
      underlay: "routed",
      mtu: UNDERLAY,
      extraConfig: VXLAN,
    });
    await t.lab.podAdd(t.name, "node1", "big1");
    await t.lab.podAdd(t.name, "node2", "big2");
    const s = t.state();
    using a = Netns.named(s.pods["big1"]!.netns);
    const [v4, v6] = s.pods["big2"]!.ips as [string, string];
    const pod = UNDERLAY - 70; // dual-stack underlay: IPv6 pods go over the IPv6 outer header
    assertEquals(
      (await ipJson<{ mtu: number }[]>(["link", "show", "eth0"], { netns: a }))[0]?.mtu,
      pod,
    );
    await dfPing(a, v4, 56);
    await dfPing(a, v6, 56);
    assert(await dfPing(a, v4, pod - 28), "full-size IPv4 packet across subnets");
    assert(await dfPing(a, v6, pod - 48), "full-size IPv6 packet across subnets");
    // A pod MTU that ignores the overhead: the same kind of full-size packet is lost.
    await ip(["link", "set", "eth0", "mtu", String(UNDERLAY)], { netns: a });
    assertEquals(await dfPing(a, v4, UNDERLAY - 28), false);
    assertEquals(await dfPing(a, v6, UNDERLAY - 48), false);
  },
});

Deno.test({
  ...opts,
  name: `vxlan: ohno daemon --cleanup leaves no device, route, neighbour or FDB entry${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2, underlay: "routed", extraConfig: VXLAN });
    const ns = t.node("node1");
    assertEquals((await kernel(ns)).links.length, 2);
    await t.lab.stopAgent(t.name, "node1");
    const n = t.state().nodes[0]!;
    const r = await runCommand(ns, OHNO, {
      args: ["daemon", "--cleanup", "--config", `${n.dir}/ohno.json`],
    });
    assertEquals(r.code, 0, r.stderr);
    assertEquals(await kernel(ns), { routes: [], neigh: [], fdb: [], links: [] });
  },
});

Deno.test({
  ...opts,
  name: `vxlan on an IPv6-only underlay: one device, IPv4 and IPv6 pods ping across subnets${skip}`,
  async fn() {
    await using t = await testLab({
      nodes: 3,
      underlay: "routed",
      nodeFamilies: "ipv6",
      extraConfig: VXLAN,
    });
    for (const n of ["node1", "node2", "node3"]) await t.lab.podAdd(t.name, n, `p${n.slice(-1)}`);
    assertEquals(await pingAll(t, ["p1", "p2", "p3"]), []);
    const k = await kernel(t.node("node1"));
    assertEquals(k.links.map((l) => [l.ifname, l.mtu]), [["ohno.vxlan6", 1430]]);
    // Both pod families through the IPv6-outer device; FDB entries point at IPv6 addresses.
    assertEquals(k.routes.length, 4, k.routes.join("\n"));
    assert(k.routes.every((r) => r.endsWith(" dev ohno.vxlan6")), k.routes.join("\n"));
    const s = t.state();
    assertEquals(
      k.fdb.map((f) => f.split(" ")[2]).sort(),
      [s.nodes[1]!.ipv6, s.nodes[2]!.ipv6].sort(),
    );
    using p1 = Netns.named(s.pods["p1"]!.netns);
    assertEquals(
      (await ipJson<{ mtu: number }[]>(["link", "show", "eth0"], { netns: p1 }))[0]?.mtu,
      1430,
    );
  },
});

Deno.test({
  ...opts,
  name:
    `switching a live node: vxlan to host-gw and back leaves nothing of the other backend${skip}`,
  async fn() {
    // A flat underlay: host-gw can reach every node, so both backends must work on it.
    await using t = await testLab({ nodes: 2, extraConfig: VXLAN });
    await t.lab.podAdd(t.name, "node1", "p1");
    await t.lab.podAdd(t.name, "node2", "p2");
    const setBackend = (backend: string) => t.lab.restartAgents(t.name, { backend });
    const vx = await kernel(t.node("node1"));
    assertEquals(vx.links.length, 2);
    await setBackend("host-gw");
    await within(20_000, "host-gw routes on node1", async () => {
      const k = await kernel(t.node("node1"));
      return k.routes.length === 2 && k.routes.every((r) => !r.includes(" dev "));
    });
    assertEquals((await kernel(t.node("node1"))).links, [], "no VXLAN device left");
    assertEquals(await pingAll(t, ["p1", "p2"]), []);
    await setBackend("vxlan");
    await within(20_000, "vxlan routes on node1", async () => {
      const k = await kernel(t.node("node1"));
      return k.routes.length === 2 && k.routes.every((r) => r.includes(" dev ohno.vxlan"));
    });
    assertEquals(await kernel(t.node("node1")), vx, "the same vxlan state as before the switch");
    assertEquals(await pingAll(t, ["p1", "p2"]), []);
  },
});

Deno.test({
  ...opts,
  name:
    `vxlan: a peer's old MAC (a reinstall) and hand-made entries on ohno's devices are put right by the resync; other devices untouched${skip}`,
  async fn() {
    await using t = await testLab({
      nodes: 2,
      underlay: "routed",
      resyncPeriod: "1s",
      extraConfig: VXLAN,
    });
    const ns = t.node("node1");
    const want = await kernel(ns);
    const n2 = t.state().nodes[1]!;
    const oldMac = "02:00:00:00:00:99";
    // What a reinstalled peer with a new MAC leaves behind, seen from the other side: the
    // neighbour points at the old MAC, and an FDB entry for the old MAC still exists.
    const [, ip4] = want.neigh.find((n) => n.startsWith("ohno.vxlan4 "))!.split(" ");
    await ip(
      ["neigh", "replace", ip4!, "lladdr", oldMac, "dev", "ohno.vxlan4", "nud", "permanent"],
      {
        netns: ns,
      },
    );
    const add = [
      "fdb",
      "append",
      oldMac,
      "dev",
      "ohno.vxlan4",
      "dst",
      n2.ipv4,
      "self",
      "permanent",
    ];
    assertEquals((await runCommand(ns, "bridge", { args: add })).code, 0);
    // A neighbour on a device that is not ohno's stays.
    await ip([
      "neigh",
      "replace",
      "172.31.0.99",
      "lladdr",
      oldMac,
      "dev",
      "eth0",
      "nud",
      "permanent",
    ], {
      netns: ns,
    });
    await within(20_000, "the resync restores node1's vxlan state", async () => {
      return JSON.stringify(await kernel(ns)) === JSON.stringify(want);
    });
    const eth0 = await ipJson<{ dst: string }[]>(["neigh", "show", "dev", "eth0"], { netns: ns });
    assert(eth0.some((n) => n.dst === "172.31.0.99"), "foreign neighbour left alone");
  },
});

/** The agent's `/status` document (routing part). */
async function agentStatus(ns: Netns): Promise<
  { routing: { vxlanMismatches: unknown[]; notRouted: { node: string; reason: string }[] } }
> {
  const r = await runCommand(ns, "curl", {
    args: ["-s", "--fail", "--max-time", "2", "http://127.0.0.1:9753/status"],
  });
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

Deno.test({
  ...opts,
  name:
    `vxlan: a peer with another VNI or port is warned about, in /status, the metric and lab status, gets no tunnel; fixing it clears all${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 3, underlay: "routed", extraConfig: VXLAN });
    for (const n of ["node1", "node2", "node3"]) await t.lab.podAdd(t.name, n, `p${n.slice(-1)}`);
    assertEquals(await pingAll(t, ["p1", "p2", "p3"]), []);
    const s = t.state();
    const n2 = s.nodes[1]!;
    const ns1 = t.node("node1");
    const restart2 = async (settings: Record<string, number>) => {
      await t.lab.stopAgent(t.name, "node2");
      const file = `${n2.dir}/ohno.json`;
      const cfg = JSON.parse(Deno.readTextFileSync(file));
      Object.assign(cfg, settings);
      Deno.writeTextFileSync(file, JSON.stringify(cfg, null, 2));
      await t.lab.startAgent(t.name, "node2");
    };
    const mismatchesOn1 = async () =>
      (await agentStatus(ns1)).routing.vxlanMismatches as Record<string, unknown>[];

    for (
      const [settings, vni, port] of [
        [{ vxlanVni: 7 }, 7, 8472],
        [{ vxlanVni: 1, vxlanPort: 4789 }, 1, 4789],
      ] as const
    ) {
      await restart2(settings);
      const want = { node: "node2", vni, port, localVni: 1, localPort: 8472 };
      await within(20_000, `node1 reports node2's VNI ${vni} port ${port}`, async () => {
        const m = await mismatchesOn1();
        return m.length === 1 && m[0]!.vni === vni && m[0]!.port === port;
      });
      assertEquals(await mismatchesOn1(), [want]);
      assertEquals(await metric(ns1, "ohno_vxlan_peer_mismatches"), 1);
      // node2 sees both others disagree with it.
      assertEquals(await metric(t.node("node2"), "ohno_vxlan_peer_mismatches"), 2);
      // The log names the peer and both values.
      const log = Deno.readTextFileSync(`${s.nodes[0]!.dir}/daemon.log`);
      assert(
        log.split("\n").some((l) =>
          /WARN.*VXLAN VNI or port differ/.test(l) && l.includes("node=node2") &&
          l.includes(`vni=${vni} port=${port} localVni=1 localPort=8472`)
        ),
        log.split("\n").slice(-20).join("\n"),
      );
      // No tunnel that cannot work: node1 holds nothing for node2 (only node3's state).
      const k = await kernel(ns1);
      assertEquals([k.routes.length, k.neigh.length, k.fdb.length], [2, 2, 2], k.fdb.join("\n"));
      assert(!k.fdb.some((f) => f.endsWith(` ${n2.ipv4}`) || f.endsWith(` ${n2.ipv6}`)));
      assert(
        (await agentStatus(ns1)).routing.notRouted.some((x) =>
          x.node === "node2" && /VXLAN settings differ/.test(x.reason)
        ),
      );
      // lab status shows it.
      const st = await t.lab.status(t.name);
      assertEquals(st.nodes.find((n) => n.name === "node1")?.routing?.vxlanMismatches, [want]);
      const cli = await runCommand(undefined, OHNO, { args: ["lab", "status", "--name", t.name] });
      assertEquals(cli.code, 0, cli.stderr);
      assert(
        new RegExp(
          `^node1\\s+vxlan mismatch\\s+node node2 has VNI ${vni} port ${port}; node1 VNI 1 port 8472$`,
          "m",
        ).test(cli.stdout),
        cli.stdout,
      );
      // The other pairs still connect.
      assertEquals(await pingAll(t, ["p1", "p3"]), []);
    }

    // Fixed: the mismatch clears everywhere and node2's pods connect again.
    await restart2({ vxlanVni: 1, vxlanPort: 8472 });
    await within(20_000, "node1 clears the mismatch", async () => {
      return (await mismatchesOn1()).length === 0 &&
        (await metric(ns1, "ohno_vxlan_peer_mismatches")) === 0;
    });
    assertEquals(await metric(t.node("node2"), "ohno_vxlan_peer_mismatches"), 0);
    await within(20_000, "node1 holds node2's state again", async () => {
      const k = await kernel(ns1);
      return k.routes.length === 4 && k.fdb.length === 4;
    });
    assertEquals(await pingAll(t, ["p1", "p2", "p3"]), []);
    assertEquals(
      (await t.lab.status(t.name)).nodes.map((n) => n.routing?.vxlanMismatches),
      [[], [], []],
    );
    assert(
      /VXLAN VNI and port agree again.*node=node2/.test(
        Deno.readTextFileSync(`${s.nodes[0]!.dir}/daemon.log`),
      ),
    );
  },
});
