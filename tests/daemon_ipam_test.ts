/**
 * The node agent's IPAM server with the real plugin as its client, and the host install
 * (binary and conflist written by rename).
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import { AgentClient, AgentError } from "../ipam/client.ts";
import { ClusterIpam } from "../ipam/cluster.ts";
import { containsIp, formatIp, nthAddress, parseCidr, parseIp } from "../ipam/addr.ts";
import { MemoryStore } from "../ipam/memory.ts";
import { Logger } from "../lib/log.ts";
import { startIpamServer } from "../daemon/ipamserver.ts";
import { conflist, installPlugin } from "../daemon/install.ts";

async function agent(ready = true) {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-agent-" });
  const ipam = new ClusterIpam(new MemoryStore());
  await ipam.addPool("10.244.0.0/16");
  await ipam.addPool("fd00:244::/48");
  await ipam.claimBlocks("node-1");
  const state = { ready };
  const events: string[] = [];
  const server = startIpamServer({
    socket: `${dir}/run/ipam.sock`,
    network: "ohno",
    node: "node-1",
    ipam,
    log: new Logger({ level: "error" }),
    ready: () => state.ready,
    observe: (e) => events.push(`${e.op}:${e.ok ? "ok" : e.reason}`),
  });
  return {
    dir,
    ipam,
    state,
    events,
    socket: server.socket,
    async [Symbol.asyncDispose]() {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("the plugin gets cluster addresses from the agent; DEL releases them", async () => {
  await using a = await agent();
  await using node = await cniNode({ network: "ohno" });
  const pod = await node.pod();
  const conf = node.conf("1.0.0", { ipam: { type: "ohno", daemonSocket: a.socket } });
  const r = await node.call({
    command: "ADD",
    containerId: "agentpod",
    netns: pod.path,
    ifname: "eth0",
    args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
    config: conf,
  });
  assertEquals(r.code, 0, r.stdout);
  const ips = r.json?.ips as { address: string; gateway: string }[];
  const blocks = await a.ipam.nodeBlocks("node-1");
  assertEquals(ips.length, 2);
  // Each address lies in one of node-1's blocks, with that block's prefix length; the
  // gateway is the block's first address.
  for (const ip of ips) {
    const [addr, len] = ip.address.split("/") as [string, string];
    const b = blocks.find((x) => containsIp(parseCidr(x.cidr), parseIp(addr)));
    assert(b, `${ip.address} from a block of node-1 (${blocks.map((x) => x.cidr)})`);
    assertEquals(len, b.cidr.split("/")[1]);
    assertEquals(
      ip.gateway,
      formatIp(b.cidr.includes(":") ? 6 : 4, nthAddress(parseCidr(b.cidr), 1n)),
    );
  }
  const rows = await a.ipam.list();
  assertEquals(rows.map((x) => [x.podNamespace, x.podName]), [["default", "web"], [
    "default",
    "web",
  ]]);
  const chk = await node.call({
    command: "CHECK",
    containerId: "agentpod",
    netns: pod.path,
    ifname: "eth0",
    config: { ...conf, prevResult: r.json },
  });
  assertEquals([chk.code, chk.stdout], [0, ""], chk.stdout);
  const d = await node.call({
    command: "DEL",
    containerId: "agentpod",
    netns: pod.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals(d.code, 0, d.stdout);
  assertEquals(await a.ipam.list(), []);
  assert(a.events.includes("allocate:ok") && a.events.includes("release:ok"), a.events.join());
});

Deno.test("GC through the agent releases exactly the invalid attachments and their host veths", async () => {
  await using a = await agent();
  await using node = await cniNode({ network: "ohno" });
  const conf = (v: string, extra = {}) =>
    node.conf(v, { ipam: { type: "ohno", daemonSocket: a.socket }, ...extra });
  // Another node's attachment in the same datastore: not this agent's to collect.
  const other = await a.ipam.allocate({ node: "node-2", containerID: "elsewhere", ifname: "eth0" });
  const held: Record<string, { ips: string[]; veth: string }> = {};
  for (const cid of ["gc-keep", "gc-drop"]) {
    const pod = await node.pod();
    const r = await node.call({
      command: "ADD",
      containerId: cid,
      netns: pod.path,
      ifname: "eth0",
      config: conf("1.0.0"),
    });
    assertEquals(r.code, 0, r.stdout);
    const ifaces = r.json?.interfaces as { name: string; sandbox?: string }[];
    held[cid] = {
      ips: (r.json?.ips as { address: string }[]).map((i) => i.address.replace(/\/\d+$/, "")),
      veth: ifaces.find((i) => i.sandbox === undefined && i.name.startsWith("veth"))!.name,
    };
  }
  const byContainer = async () => {
    const m: Record<string, string[]> = {};
    for (const row of await a.ipam.list()) (m[row.containerID] ??= []).push(row.ip);
    for (const v of Object.values(m)) v.sort();
    return m;
  };
  assertEquals(Object.keys(await byContainer()).sort(), ["elsewhere", "gc-drop", "gc-keep"]);
  const gc = await node.call({
    command: "GC",
    config: conf("1.1.0", {
      "cni.dev/valid-attachments": [{ containerID: "gc-keep", ifname: "eth0" }],
    }),
  });
  assertEquals([gc.code, gc.stdout], [0, ""], gc.stdout);
  assertEquals(await byContainer(), {
    "elsewhere": other.map((o) => o.ip).sort(),
    "gc-keep": held["gc-keep"]!.ips.sort(),
  });
  const links = (await node.state()).links;
  assert(!links.includes(held["gc-drop"]!.veth), `gc-drop's veth is still there: ${links}`);
  assert(links.includes(held["gc-keep"]!.veth), `gc-keep's veth is gone: ${links}`);
  assert(a.events.includes("gc:ok"), a.events.join());
});

Deno.test("an agent that is not ready answers not-ready (CNI 11); wrong network is invalid", async () => {
  await using a = await agent(false);
  using client = new AgentClient(a.socket);
  try {
    await client.allocate({ network: "ohno", containerID: "c", ifname: "eth0" });
    throw new Error("allocated while not ready");
  } catch (e) {
    assert(e instanceof AgentError && e.kind === "not-ready", String(e));
  }
  a.state.ready = true;
  try {
    await client.allocate({ network: "other", containerID: "c", ifname: "eth0" });
    throw new Error("served another network");
  } catch (e) {
    assert(e instanceof AgentError && e.kind === "invalid", String(e));
  }
  const st = await client.status();
  assertEquals(st, { ready: true, node: "node-1" });
  assertEquals(Deno.statSync(a.socket).mode! & 0o777, 0o600);
});

Deno.test("install: binary and conflist by rename, unchanged files left alone, a busy binary replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-install-" });
  try {
    const bin = `${dir}/bin`, conf = `${dir}/net.d`;
    Deno.mkdirSync(bin);
    // A running process executes the installed binary (as a runtime mid-ADD would).
    Deno.copyFileSync("/bin/sleep", `${bin}/ohno`);
    const busy = new Deno.Command(`${bin}/ohno`, { args: ["30"] }).spawn();
    const list = conflist({
      network: "ohno",
      bridge: "ohno0",
      mtu: 1450,
      socket: "/run/ohno/ipam.sock",
      logFile: "/var/run/log/ohno.log",
      portmap: true,
    });
    const r1 = installPlugin({
      source: "/bin/true",
      binDir: bin,
      confDir: conf,
      conflistName: "10-ohno.conflist",
      conflist: list,
    });
    assertEquals(r1, { binary: true, conflist: true });
    const r2 = installPlugin({
      source: "/bin/true",
      binDir: bin,
      confDir: conf,
      conflistName: "10-ohno.conflist",
      conflist: list,
    });
    assertEquals(r2, { binary: false, conflist: false });
    assertEquals(Deno.readLinkSync(`${bin}/ohno-ipam`), "ohno");
    const written = JSON.parse(Deno.readTextFileSync(`${conf}/10-ohno.conflist`));
    assertEquals(written.plugins[0].ipam, { type: "ohno", daemonSocket: "/run/ohno/ipam.sock" });
    assertEquals(written.plugins.map((p: { type: string }) => p.type), ["ohno", "portmap"]);
    assertMatch(
      JSON.stringify([...Deno.readDirSync(conf)].map((e) => e.name)),
      /^\["10-ohno\.conflist"\]$/,
    );
    busy.kill();
    await busy.status;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
