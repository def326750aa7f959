/**
 * macvlan and ipvlan modes against the real kernel. Each node is a namespace with its own
 * "uplink" (a veth pair, both ends up, the node's address and default route on one end):
 * the master the pods' slaves hang off. Pods ping each other through the master, the node
 * reaches its pods through the host shim, DEL leaves nothing, and every bad master is
 * error 7 before anything is touched.
 *
 * ipvlan tests run only where the kernel can make ipvlan links (probed in a throwaway
 * namespace); elsewhere they are registered as skipped with the reason.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { type CniNode, cniNode } from "./support/cni.ts";
import { tempNetns } from "./support/netns.ts";
import { ip, ipJson, type IpLink, type IpRoute } from "../netns/ip.ts";
import { runCommand } from "../netns/netns.ts";
import type { CniReply } from "./support/ohno.ts";
import { clientsMissing, podman } from "./support/clients.ts";
import { callCni } from "./support/ohno.ts";
import { testLab } from "./support/lab.ts";
import { etcdMissing } from "./support/etcd.ts";

const NODE_ADDR = "192.168.77.1";

/** A CNI node whose namespace has an uplink `up0` holding the node's address and default route. */
async function slaveNode(network: string, uplinkMtu = 1500): Promise<CniNode> {
  const node = await cniNode({ network, ranges: [[{ subnet: "10.88.0.0/24" }]] });
  try {
    const run = (args: string[]) => ip(args, { netns: node.host.ns });
    await run([
      "link",
      "add",
      "up0",
      "mtu",
      String(uplinkMtu),
      "type",
      "veth",
      "peer",
      "name",
      "up0p",
    ]);
    await run(["link", "set", "up0p", "up"]);
    await run(["link", "set", "up0", "up"]);
    await run(["addr", "add", `${NODE_ADDR}/24`, "dev", "up0"]);
    await run(["route", "add", "default", "via", "192.168.77.254", "dev", "up0"]);
  } catch (e) {
    await node[Symbol.asyncDispose]();
    throw e;
  }
  return node;
}

function addrOf(r: CniReply): string {
  const ips = (r.json?.ips ?? []) as { address: string }[];
  assert(ips[0], `no address in ${r.stdout}`);
  return ips[0].address.split("/")[0]!;
}

async function ping(ns: { ns: import("../netns/netns.ts").Netns }, target: string) {
  const r = await runCommand(ns.ns, "ping", { args: ["-c", "1", "-W", "2", target] });
  assertEquals(r.code, 0, `ping ${target}: ${r.stdout}${r.stderr}`);
}

async function podLinks(pod: { ns: import("../netns/netns.ts").Netns }): Promise<string[]> {
  return (await ipJson<IpLink[]>(["link", "show"], { netns: pod.ns })).map((l) => l.ifname).sort();
}

async function linkOf(pod: { ns: import("../netns/netns.ts").Netns }, name = "eth0") {
  return (await ipJson<IpLink[]>(["-d", "link", "show", "dev", name], { netns: pod.ns }))[0]!;
}

function call(
  node: CniNode,
  command: string,
  pod: { path: string } | undefined,
  id: string,
  extra: Record<string, unknown>,
  version = "1.0.0",
): Promise<CniReply> {
  return node.call({
    command,
    containerID: id,
    netns: pod?.path ?? "",
    ifname: "eth0",
    config: node.conf(version, extra),
  });
}

/** Whether this kernel can make links of `kind` (tried on a veth in a throwaway namespace). */
async function kernelHas(kind: "macvlan" | "ipvlan"): Promise<boolean> {
  await using ns = await tempNetns("probe");
  await ip(["link", "add", "p0", "type", "veth", "peer", "name", "p1"], { netns: ns.ns });
  try {
    await ip(["link", "add", "s0", "link", "p0", "type", kind], { netns: ns.ns });
    return true;
  } catch {
    return false;
  }
}

const HAS_IPVLAN = await kernelHas("ipvlan");
const NO_IPVLAN = "this kernel has no ipvlan module";

for (const kind of ["macvlan", "ipvlan"] as const) {
  const mode = kind === "macvlan" ? { mode: "macvlan" } : { mode: "ipvlan", ipvlanMode: "l2" };
  const skip = kind === "ipvlan" && !HAS_IPVLAN;
  const name = (n: string) => `${kind}: ${n}${skip ? ` [SKIP: ${NO_IPVLAN}]` : ""}`;

  Deno.test({
    name: name("two pods on one node ping each other; CHECK passes; DEL leaves nothing"),
    ignore: skip,
    fn: async () => {
      await using node = await slaveNode(`${kind}pair`);
      const a = await node.pod("a");
      const b = await node.pod("b");
      const clean = await node.state();
      const ra = await call(node, "ADD", a, "pod-a", mode);
      const rb = await call(node, "ADD", b, "pod-b", mode);
      assertEquals([ra.code, rb.code], [0, 0], ra.stdout + rb.stdout);
      // One interface, in the pod; no veth, no bridge, no address on the host.
      const ifaces = ra.json!.interfaces as Record<string, unknown>[];
      assertEquals(ifaces.map((i) => [i.name, i.sandbox]), [["eth0", a.path]]);
      assertEquals((ra.json!.ips as { interface: number }[]).map((i) => i.interface), [0]);
      const after = await node.state();
      assertEquals([after.links, after.addresses], [clean.links, clean.addresses]);
      const la = await linkOf(a);
      assertEquals(la.linkinfo?.info_kind, kind);
      assertEquals(la.linkinfo?.info_data?.mode, kind === "macvlan" ? "bridge" : "l2");
      assertEquals(la.mtu, 1500, "the master's MTU");
      const r4 = await ipJson<IpRoute[]>(["-4", "route", "show", "default"], { netns: a.ns });
      assertEquals([r4[0]?.gateway, r4[0]?.dev], ["10.88.0.1", "eth0"], "IPAM's gateway");
      await ping(a, addrOf(rb));
      await ping(b, addrOf(ra));

      const check = await call(node, "CHECK", a, "pod-a", { ...mode, prevResult: ra.json });
      assertEquals([check.code, check.stdout], [0, ""], check.stdout);
      // CHECK notices a slave in another mode than the config's.
      const [made, other] = kind === "macvlan" ? ["bridge", "private"] : ["l2", "l3"];
      const moved = await call(node, "CHECK", a, "pod-a", {
        ...mode,
        [`${kind}Mode`]: other,
        prevResult: ra.json,
      });
      assertEquals(moved.json?.code, 103, moved.stdout);
      assertMatch(
        String(moved.json?.msg),
        new RegExp(`eth0 is in ${kind} mode ${made}, not ${other}`),
      );
      // CHECK notices a pod interface that is not a slave of the configured kind.
      await ip(["link", "del", "dev", "eth0"], { netns: b.ns });
      const macB = String((rb.json!.interfaces as { mac: string }[])[0]!.mac);
      await ip(["link", "add", "eth0", "address", macB, "type", "veth", "peer", "name", "x"], {
        netns: b.ns,
      });
      await ip(["addr", "add", `${addrOf(rb)}/24`, "dev", "eth0"], { netns: b.ns });
      await ip(["link", "set", "eth0", "up"], { netns: b.ns });
      await ip(["route", "add", "default", "via", "10.88.0.1"], { netns: b.ns });
      const bad = await call(node, "CHECK", b, "pod-b", { ...mode, prevResult: rb.json });
      assertEquals(bad.json?.code, 103, bad.stdout);
      assertMatch(String(bad.json?.msg), new RegExp(`eth0 is a veth link, not a ${kind} slave`));
      await ip(["link", "del", "dev", "eth0"], { netns: b.ns });

      for (const [p, id] of [[a, "pod-a"], [b, "pod-b"]] as const) {
        const d = await call(node, "DEL", p, id, mode);
        assertEquals([d.code, d.stdout], [0, ""], d.stdout);
        assertEquals(await podLinks(p), ["lo"]);
      }
      assertEquals(await node.state(), clean);
      // DEL again, and DEL with an empty CNI_NETNS, forgive what is gone.
      assertEquals((await call(node, "DEL", a, "pod-a", mode)).code, 0);
      assertEquals((await call(node, "DEL", undefined, "pod-a", mode)).code, 0);
    },
  });

  Deno.test({
    name: name("the node reaches its pods through the host shim, and the pods the node"),
    ignore: skip,
    fn: async () => {
      await using node = await slaveNode(`${kind}shim`);
      const a = await node.pod("a");
      const conf = { ...mode, hostShim: true };
      const r = await call(node, "ADD", a, "pod-a", conf);
      assertEquals(r.code, 0, r.stdout);
      const podIp = addrOf(r);
      await ping(node.host, podIp);
      await ping(a, NODE_ADDR);
      // Every ADD routes its subnet through the existing shim: a route deleted by hand returns.
      await ip(["route", "del", "10.88.0.0/24"], { netns: node.host.ns });
      const b = await node.pod("b");
      const rb = await call(node, "ADD", b, "pod-b", conf);
      assertEquals(rb.code, 0, rb.stdout);
      await ping(node.host, addrOf(rb));
      // One shim per master, holding the node's address; the pod subnet routes through it.
      const links = await ipJson<IpLink[]>(["-d", "link", "show"], { netns: node.host.ns });
      const shims = links.filter((l) => l.ifname.startsWith("shim"));
      assertEquals(shims.length, 1);
      assertEquals(shims[0]!.linkinfo?.info_kind, kind);
      const route = await ipJson<IpRoute[]>(["route", "get", podIp], { netns: node.host.ns });
      assertEquals(route[0]?.dev, shims[0]!.ifname);
      for (const [p, id] of [[a, "pod-a"], [b, "pod-b"]] as const) {
        assertEquals((await call(node, "DEL", p, id, conf)).code, 0);
        assertEquals(await podLinks(p), ["lo"]);
      }
      assertEquals(node.allocations(), []);
    },
  });
}

Deno.test("macvlan: master, macvlanMode, mtu, mac and ips are honoured; delegated IPAM works", async () => {
  await using node = await slaveNode("mvkeys", 1450);
  const p = await node.pod();
  const mac = "02:aa:bb:cc:dd:01";
  const conf = {
    mode: "macvlan",
    master: "up0",
    macvlanMode: "private",
    mtu: 1400,
    runtimeConfig: { mac, ips: ["10.88.0.77/24"] },
  };
  const r = await call(node, "ADD", p, "keys", conf);
  assertEquals(r.code, 0, r.stdout);
  const l = await linkOf(p);
  assertEquals(
    [l.linkinfo?.info_kind, l.linkinfo?.info_data?.mode, l.mtu, l.address],
    ["macvlan", "private", 1400, mac],
  );
  assertEquals(addrOf(r), "10.88.0.77", "the ips capability");
  assertEquals((await call(node, "DEL", p, "keys", conf)).code, 0);
  // Without mtu: the master's MTU, not the default-route rule of bridge mode's 1500.
  const q = await node.pod();
  const dataDir = `${node.dataDir}/hl`;
  const hl = { type: "host-local", subnet: "10.89.0.0/24", dataDir };
  const r2 = await call(node, "ADD", q, "hl", { mode: "macvlan", ipam: hl });
  assertEquals(r2.code, 0, r2.stdout);
  assertEquals((await linkOf(q)).mtu, 1450);
  assertMatch(addrOf(r2), /^10\.89\.0\./);
  assertEquals((await call(node, "DEL", q, "hl", { mode: "macvlan", ipam: hl })).code, 0);
  assertEquals(await podLinks(q), ["lo"]);
});

Deno.test("macvlan: DEL given the node's own namespace deletes none of the node's links", async () => {
  await using node = await slaveNode("mvhome");
  const clean = await node.state();
  const r = await node.call({
    command: "DEL",
    containerID: "home",
    netns: node.host.path,
    ifname: "up0",
    config: node.conf("1.0.0", { mode: "macvlan" }),
  });
  assertEquals([r.code, r.stdout], [0, ""], r.stdout);
  assertEquals(await node.state(), clean, "up0 is still there");
});

Deno.test("macvlan: a failure after the pod side rolls back the interface and the address", async () => {
  await using node = await slaveNode("mvfault");
  const p = await node.pod();
  const clean = await node.state();
  const r = await node.call({
    command: "ADD",
    containerID: "fault",
    netns: p.path,
    ifname: "eth0",
    config: node.conf("1.0.0", { mode: "macvlan" }),
    env: { OHNO_TEST_FAULT: "after-pod" },
  });
  assertEquals(r.json?.code, 999, r.stdout);
  assertEquals(await podLinks(p), ["lo"]);
  assertEquals(await node.state(), clean);
});

Deno.test("macvlan: STATUS is 50 when the master is gone; GC releases what is not valid", async () => {
  await using node = await slaveNode("mvgc");
  const p = await node.pod();
  const mode = { mode: "macvlan" };
  assertEquals((await call(node, "ADD", p, "keep", mode, "1.1.0")).code, 0);
  const q = await node.pod();
  assertEquals((await call(node, "ADD", q, "drop", mode, "1.1.0")).code, 0);
  assertEquals(node.allocations().length, 2);
  const ok = await node.call({ command: "STATUS", config: node.conf("1.1.0", mode) });
  assertEquals([ok.code, ok.stdout], [0, ""], ok.stdout);
  const gone = await node.call({
    command: "STATUS",
    config: node.conf("1.1.0", { ...mode, master: "nosuch0" }),
  });
  assertEquals(gone.json?.code, 50, gone.stdout);
  assertMatch(String(gone.json?.msg), /master "nosuch0" does not exist/);
  const gc = await node.call({
    command: "GC",
    config: node.conf("1.1.0", {
      ...mode,
      "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }],
    }),
  });
  assertEquals(gc.code, 0, gc.stdout);
  assertEquals(node.allocations().length, 1);
});

Deno.test("macvlan: bad masters and MTUs are error 7 naming the field, nothing touched", async () => {
  await using node = await slaveNode("mvbad");
  const p = await node.pod();
  await ip(["link", "add", "mv0", "link", "up0", "type", "macvlan"], { netns: node.host.ns });
  const clean = await node.state();
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ mode: "macvlan", master: "nosuch0" }, /master "nosuch0" does not exist/],
    [{ mode: "macvlan", master: "mv0" }, /master "mv0" is itself a macvlan slave/],
    [{ mode: "macvlan", mtu: 9000 }, /mtu 9000 is above the MTU of master "up0" \(1500\)/],
    [{ mode: "macvtap" }, /mode "macvtap" is not a pod mode/],
    [{ mode: "macvlan", macvlanMode: "l2" }, /macvlanMode "l2" is not one of the macvlan modes/],
  ];
  for (const [conf, msg] of cases) {
    const r = await call(node, "ADD", p, "bad", conf);
    assertEquals(r.json?.code, 7, r.stdout);
    assertMatch(String(r.json?.msg), msg);
    assertEquals(await node.state(), clean);
    assertEquals(await podLinks(p), ["lo"]);
  }
  // A shim route would replace the node's own route to its uplink subnet: refused, released.
  const own = await call(node, "ADD", p, "bad", {
    mode: "macvlan",
    hostShim: true,
    ipam: { type: "ohno", dataDir: node.dataDir, ranges: [[{ subnet: "192.168.77.0/24" }]] },
  });
  assertEquals(own.json?.code, 7, own.stdout);
  assertMatch(
    String(own.json?.msg),
    /cannot route pod subnet 192\.168\.77\.0\/24 through the shim: the node routes it through up0/,
  );
  assertEquals(await node.state(), clean);
  assertEquals(await podLinks(p), ["lo"]);
  // No default route and no master: nothing to hang the pods off.
  await ip(["route", "del", "default"], { netns: node.host.ns });
  const r = await call(node, "ADD", p, "bad", { mode: "macvlan" });
  assertEquals(r.json?.code, 7, r.stdout);
  assertMatch(String(r.json?.msg), /master is not set and the node has no default route/);
});

const missingClients = clientsMissing();

Deno.test({
  name: `macvlan: podman runs a container on a macvlan network with the shim; rm releases it${
    missingClients ? ` [SKIP: ${missingClients}]` : ""
  }`,
  ignore: !!missingClients,
  sanitizeResources: false,
  async fn() {
    await using node = await slaveNode("ohnomv");
    const list = {
      cniVersion: "1.0.0",
      name: "ohnomv",
      plugins: [{
        type: "ohno",
        mode: "macvlan",
        master: "up0",
        hostShim: true,
        logFile: node.logFile,
        logLevel: "debug",
        ipam: { type: "ohno", dataDir: node.dataDir, ranges: [[{ subnet: "10.83.0.0/24" }]] },
      }],
    };
    const pm = await podman(`${node.dataDir}/podman`, node.host.ns, list);
    try {
      const run = await pm.run([
        "run",
        "-d",
        "--name",
        "mv1",
        "--network",
        "ohnomv",
        pm.image,
        "sleep",
        "300",
      ]);
      assertEquals(run.code, 0, run.stderr);
      const addr = await pm.run(["exec", "mv1", "ip", "-4", "addr", "show", "eth0"]);
      assertMatch(addr.stdout, /inet 10\.83\.0\.2\/24/);
      // The node reaches the container through the shim, and the container the node.
      await ping(node.host, "10.83.0.2");
      const back = await pm.run(["exec", "mv1", "ping", "-c", "1", "-W", "2", NODE_ADDR]);
      assertEquals(back.code, 0, back.stdout + back.stderr);
      assertEquals(node.allocations(), ["10.83.0.2"]);
      const rm = await pm.run(["rm", "-f", "mv1"]);
      assertEquals(rm.code, 0, rm.stderr);
      assertEquals(node.allocations(), []);
      const log = await Deno.readTextFile(node.logFile);
      // busybox's ip cannot show the link kind: the plugin's log says what it made.
      assertMatch(log, /\[ADD [0-9a-f]{12} eth0\] attached .*macvlan.*up0 bridge/);
      assertMatch(log, /\[DEL [0-9a-f]{12} eth0\] detached/);
    } finally {
      await pm.run(["rm", "-af"]);
      await pm.run(["rmi", "-af"]);
    }
  },
});

const noEtcd = etcdMissing();

Deno.test({
  name: `macvlan: pods on two lab nodes ping across the underlay; with the agent's IPAM too${
    noEtcd ? ` [SKIP: ${noEtcd}]` : ""
  }`,
  ignore: !!noEtcd,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using t = await testLab({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "ohnot-mvlab-" });
    const cleanup: AsyncDisposable[] = [];
    try {
      // Pods straight on the underlay (172.31.0.0/24): each node hands out its own slice,
      // and the lab's router (.1) is their gateway. The master is each node's eth0, found
      // through its default route.
      const pods: { ns: { ns: import("../netns/netns.ts").Netns }; ip: string }[] = [];
      for (const [node, start] of [["node1", 50], ["node2", 60]] as const) {
        for (const i of [0, 1]) {
          const pod = await tempNetns(`${node.slice(-1)}mv`);
          cleanup.push(pod);
          const conf = {
            cniVersion: "1.0.0",
            name: "mvlab",
            type: "ohno",
            mode: "macvlan",
            ipam: {
              type: "ohno",
              dataDir: `${dir}/${node}`,
              ranges: [[{
                subnet: "172.31.0.0/24",
                rangeStart: `172.31.0.${start}`,
                rangeEnd: `172.31.0.${start + 9}`,
                gateway: "172.31.0.1",
              }]],
            },
          };
          const r = await callCni({
            command: "ADD",
            host: t.node(node),
            containerID: `${node}-${i}`,
            netns: pod.path,
            ifname: "eth0",
            config: conf,
          });
          assertEquals(r.code, 0, r.stdout + r.stderr);
          pods.push({ ns: pod, ip: addrOf(r) });
        }
      }
      assertEquals(pods.map((p) => p.ip), [
        "172.31.0.50",
        "172.31.0.51",
        "172.31.0.60",
        "172.31.0.61",
      ]);
      for (const a of pods) {
        await ping(a.ns, "172.31.0.1"); // the underlay's router
        for (const b of pods) if (a !== b) await ping(a.ns, b.ip);
      }
      // Another node on the underlay reaches a pod directly (a slave cannot reach only
      // its own master).
      await ping({ ns: t.node("node2") }, "172.31.0.50");

      // The same mode with the node agent's IPAM: the agent on node1 hands out addresses
      // of its block, the two pods reach each other, DEL releases them there.
      const list = t.lab.nodeConflist(t.state().nodes.find((n) => n.name === "node1")!);
      const plugin = (list.plugins as Record<string, unknown>[]).find((p) => p.type === "ohno")!;
      const agentConf = {
        ...plugin,
        cniVersion: list.cniVersion,
        name: list.name,
        mode: "macvlan",
        ipMasq: false,
      };
      assert(
        typeof (plugin.ipam as Record<string, unknown>).daemonSocket === "string",
        JSON.stringify(plugin),
      );
      const agentPods: {
        ns: { ns: import("../netns/netns.ts").Netns };
        path: string;
        ip: string;
      }[] = [];
      for (const i of [0, 1]) {
        const pod = await tempNetns("1ag");
        cleanup.push(pod);
        const r = await callCni({
          command: "ADD",
          host: t.node("node1"),
          containerID: `agent-${i}`,
          netns: pod.path,
          ifname: "eth0",
          config: agentConf,
          args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=mv${i}`,
        });
        assertEquals(r.code, 0, r.stdout + r.stderr);
        agentPods.push({ ns: pod, path: pod.path, ip: addrOf(r) });
      }
      await ping(agentPods[0]!.ns, agentPods[1]!.ip);
      await ping(agentPods[1]!.ns, agentPods[0]!.ip);
      const live = await t.lab.ipam(t.name, ["ls", "-o", "json"]);
      for (const p of agentPods) assert(live.stdout.includes(`"${p.ip}"`), live.stdout);
      for (const i of [0, 1]) {
        const d = await callCni({
          command: "DEL",
          host: t.node("node1"),
          containerID: `agent-${i}`,
          netns: agentPods[i]!.path,
          ifname: "eth0",
          config: agentConf,
        });
        assertEquals(d.code, 0, d.stdout);
      }
      const check = await t.lab.ipam(t.name, ["check"]);
      assertEquals(check.code, 0, check.stdout);
      const held = await t.lab.ipam(t.name, ["ls", "-o", "json"]);
      assertEquals(held.code, 0, held.stderr);
      for (const p of agentPods) assert(!held.stdout.includes(`"${p.ip}"`), held.stdout);
    } finally {
      await Promise.allSettled(cleanup.splice(0).map((p) => p[Symbol.asyncDispose]()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
