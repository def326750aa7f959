/**
 * The bad-input corpus: every case must give its documented error code as exactly one
 * JSON document on stdout with a non-zero exit, and leave nothing behind: no extra
 * link or address in the node's namespace, nothing in the pod's, no allocation.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import { holdLock } from "./support/lockholder.ts";
import type { CniReply } from "./support/ohno.ts";
import { ip, type IpAddr, ipJson, type IpLink } from "../netns/ip.ts";
import type { Netns } from "../netns/netns.ts";
import { sleep } from "../lib/async.ts";

interface Case {
  name: string;
  code: number;
  /** Config to send (default: the node's valid config). A string is sent as is. */
  config?: (base: Record<string, unknown>) => unknown;
  /**
   * Environment changes; `null` removes a variable. `@other` is the other pod's namespace,
   * `@host` the node's own namespace (the one the plugin runs in), `@hash` a path with a
   * '#' to the pod's namespace.
   */
  env?: Record<string, string | null>;
  command?: string;
  /** The message must match. */
  msg?: RegExp;
}

/** A prevResult for CHECK cases that must fail before comparing anything. */
const PREV = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "eth0" }],
  ips: [{ address: "10.88.0.9/24", interface: 0 }],
};

const ipamOf = (b: Record<string, unknown>) => b.ipam as Record<string, unknown>;
const withIpam = (b: Record<string, unknown>, ipam: Record<string, unknown>) => ({
  ...b,
  ipam: { ...ipamOf(b), ...ipam },
});
const without = (o: Record<string, unknown>, key: string) => {
  const c = { ...o };
  delete c[key];
  return c;
};

const CASES: Case[] = [
  { name: "stdin is not JSON", code: 6, config: () => "{not json" },
  { name: "stdin is empty", code: 6, config: () => "" },
  { name: "stdin is a JSON list", code: 6, config: () => "[1,2]" },
  { name: "cniVersion missing", code: 7, config: (b) => without(b, "cniVersion") },
  {
    name: "cniVersion 0.2.0 is not supported",
    code: 1,
    config: (b) => ({ ...b, cniVersion: "0.2.0" }),
  },
  { name: "cniVersion from the future", code: 1, config: (b) => ({ ...b, cniVersion: "9.9.9" }) },
  { name: "name missing", code: 7, config: (b) => without(b, "name") },
  { name: "name with blanks", code: 7, config: (b) => ({ ...b, name: "bad name!" }) },
  { name: "type missing", code: 7, config: (b) => without(b, "type") },
  { name: "ipam missing", code: 7, config: (b) => without(b, "ipam") },
  {
    name: "ipam.type missing",
    code: 7,
    config: (b) => ({ ...b, ipam: without(ipamOf(b), "type") }),
  },
  {
    name: "ipam without ranges or daemonSocket",
    code: 7,
    config: (b) => ({ ...b, ipam: { type: "ohno" } }),
  },
  {
    name: "ipam with both ranges and daemonSocket",
    code: 7,
    config: (b) => withIpam(b, { daemonSocket: "/run/ohno/ipam.sock" }),
  },
  {
    name: "a subnet that is not a CIDR",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "10.0.0.0/33" }]] }),
  },
  {
    name: "a subnet that is a number",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: 10 }]] }),
  },
  {
    name: "rangeStart outside the subnet",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "10.0.0.0/24", rangeStart: "10.0.1.5" }]] }),
  },
  {
    name: "rangeStart after rangeEnd",
    code: 7,
    config: (b) =>
      withIpam(b, {
        ranges: [[{ subnet: "10.0.0.0/24", rangeStart: "10.0.0.9", rangeEnd: "10.0.0.5" }]],
      }),
  },
  {
    name: "a gateway that is not an address",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "10.0.0.0/24", gateway: "gw" }]] }),
  },
  {
    name: "a /31 is too small",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "10.0.0.0/31" }]] }),
  },
  {
    name: "overlapping range sets",
    code: 7,
    config: (b) =>
      withIpam(b, { ranges: [[{ subnet: "10.0.0.0/16" }], [{ subnet: "10.0.5.0/24" }]] }),
  },
  {
    name: "two IPv4 range sets",
    code: 7,
    config: (b) =>
      withIpam(b, { ranges: [[{ subnet: "10.0.0.0/24" }], [{ subnet: "10.1.0.0/24" }]] }),
  },
  { name: "mtu too small", code: 7, config: (b) => ({ ...b, mtu: 10 }) },
  {
    name: "a subnet of 0.0.0.0/0",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "0.0.0.0/0" }]] }),
    msg: /0\.0\.0\.0\/0 covers every address/,
  },
  {
    name: "a subnet of ::/0",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "::/0" }]] }),
    msg: /::\/0 covers every address/,
  },
  {
    name: "a subnet over the loopback block",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "127.0.0.0/16" }]] }),
    msg: /127\.0\.0\.0\/8/,
  },
  {
    name: "an IPv6 subnet holding ::1",
    code: 7,
    config: (b) => withIpam(b, { ranges: [[{ subnet: "::/64" }]] }),
    msg: /::\/64 overlaps ::\/128/,
  },
  {
    name: "mtu 100 with an IPv6 range",
    code: 7,
    config: (b) => ({ ...b, mtu: 100 }),
    msg: /mtu 100 .*1280/,
  },
  {
    name: "mtu 1279 with an IPv6 range",
    code: 7,
    config: (b) => ({ ...b, mtu: 1279 }),
  },
  { name: "mtu not a number", code: 7, config: (b) => ({ ...b, mtu: "big" }) },
  {
    name: "bridge name too long",
    code: 7,
    config: (b) => ({ ...b, bridge: "a-very-long-bridge" }),
  },
  {
    name: "bridge named all (the kernel reserves it)",
    code: 7,
    config: (b) => ({ ...b, bridge: "all" }),
    msg: /bridge "all"/,
  },
  { name: "bridge named default", code: 7, config: (b) => ({ ...b, bridge: "default" }) },
  {
    name: "bridge name with a '#' (ip's batch cannot carry it)",
    code: 7,
    config: (b) => ({ ...b, bridge: "br#1" }),
  },
  {
    name: "bridge name with both kinds of quote",
    code: 7,
    config: (b) => ({ ...b, bridge: `b"r'1` }),
  },
  {
    name: "bridge that is an existing veth link",
    code: 7,
    config: (b) => ({ ...b, bridge: "uplink0" }),
    msg: /"uplink0" .*veth/,
  },
  {
    name: "isDefaultGateway without isGateway",
    code: 7,
    config: (b) => ({ ...b, isGateway: false, isDefaultGateway: true }),
  },
  { name: "hairpinMode not a boolean", code: 7, config: (b) => ({ ...b, hairpinMode: "yes" }) },
  { name: "vlan is not supported", code: 2, config: (b) => ({ ...b, vlan: 100 }) },
  { name: "macspoofchk is not supported", code: 2, config: (b) => ({ ...b, macspoofchk: true }) },
  {
    name: "runtimeConfig.mac is not a MAC",
    code: 7,
    config: (b) => ({ ...b, runtimeConfig: { mac: "zz:zz" } }),
  },
  {
    name: "runtimeConfig.mac is multicast",
    code: 7,
    config: (b) => ({ ...b, runtimeConfig: { mac: "01:00:5e:00:00:01" } }),
  },
  {
    name: "runtimeConfig.ips holds a non-address",
    code: 7,
    config: (b) => ({ ...b, runtimeConfig: { ips: ["ten"] } }),
  },
  {
    name: "dns.nameservers not addresses",
    code: 7,
    config: (b) => ({ ...b, dns: { nameservers: ["dns"] } }),
  },
  {
    name: "ipam.routes with a bad dst",
    code: 7,
    config: (b) => withIpam(b, { routes: [{ dst: "everywhere" }] }),
  },
  { name: "ipam.dataDir is relative", code: 7, config: (b) => withIpam(b, { dataDir: "ipam" }) },
  {
    name: "ipam.daemonSocket is relative",
    code: 7,
    config: (b) => ({ ...b, ipam: { type: "ohno", daemonSocket: "ipam.sock" } }),
  },
  {
    name: "a whole conflist instead of one plugin's config",
    code: 7,
    config: (b) => ({ cniVersion: "1.0.0", name: "x", plugins: [b] }),
  },
  {
    name: "delegating to an IPAM plugin that is not in CNI_PATH",
    code: 7,
    config: (b) => ({ ...b, ipam: { type: "no-such-ipam" } }),
  },
  {
    name: "a prevResult that is not a result",
    code: 6,
    config: (b) => ({ ...b, prevResult: { ips: [{ address: "nope" }] } }),
  },
  { name: "CNI_COMMAND unknown", code: 4, env: { CNI_COMMAND: "FROB" } },
  { name: "CNI_CONTAINERID missing", code: 4, env: { CNI_CONTAINERID: null } },
  { name: "CNI_CONTAINERID with a slash", code: 4, env: { CNI_CONTAINERID: "../etc" } },
  {
    name: "CNI_CONTAINERID of 1,025 characters",
    code: 4,
    env: { CNI_CONTAINERID: "c".repeat(1025) },
    msg: /CNI_CONTAINERID .*1025 characters.*1024/,
  },
  {
    name: "CNI_CONTAINERID of 10,240 characters (the message does not echo it)",
    code: 4,
    env: { CNI_CONTAINERID: "c".repeat(10240) },
    msg: /^.{0,300}$/,
  },
  { name: "CNI_IFNAME missing", code: 4, env: { CNI_IFNAME: null } },
  { name: "CNI_IFNAME too long", code: 4, env: { CNI_IFNAME: "averyveryverylongname" } },
  { name: "CNI_IFNAME with a slash", code: 4, env: { CNI_IFNAME: "eth/0" } },
  { name: "CNI_IFNAME all (the kernel reserves it)", code: 4, env: { CNI_IFNAME: "all" } },
  { name: "CNI_IFNAME default", code: 4, env: { CNI_IFNAME: "default" } },
  { name: "CNI_IFNAME with a '#'", code: 4, env: { CNI_IFNAME: "eth#0" } },
  { name: "CNI_NETNS missing on ADD", code: 4, env: { CNI_NETNS: null } },
  { name: "CNI_NETNS relative", code: 4, env: { CNI_NETNS: "netns/x" } },
  {
    name: "CNI_NETNS that does not exist",
    code: 4,
    env: { CNI_NETNS: "/var/run/netns/ohnot-no-such" },
  },
  { name: "CNI_NETNS that is not a namespace", code: 4, env: { CNI_NETNS: "/etc/hostname" } },
  {
    name: "CNI_NETNS that is the plugin's own namespace",
    code: 4,
    env: { CNI_NETNS: "@host" },
    msg: /own network namespace/,
  },
  {
    name: "CNI_NETNS /proc/self/ns/net (the plugin's own, by another path)",
    code: 4,
    env: { CNI_NETNS: "/proc/self/ns/net" },
    msg: /own network namespace/,
  },
  {
    name: "CHECK with the plugin's own namespace",
    code: 4,
    command: "CHECK",
    env: { CNI_NETNS: "@host" },
    config: (b) => ({ ...b, prevResult: PREV }),
  },
  {
    name: "CNI_NETNS with a '#' (ip's batch cannot carry it)",
    code: 4,
    env: { CNI_NETNS: "@hash" },
    msg: /'#'/,
  },
  { name: "CNI_ARGS malformed", code: 4, env: { CNI_ARGS: "K8S_POD_NAME" } },
  { name: "CNI_ARGS with an unknown key", code: 4, env: { CNI_ARGS: "FOO=bar" } },
  { name: "CNI_ARGS IP= not an address", code: 4, env: { CNI_ARGS: "IP=ten" } },
  { name: "CNI_ARGS MAC= not a MAC", code: 4, env: { CNI_ARGS: "MAC=aa:bb" } },
  { name: "CNI_ARGS IP= outside every range", code: 102, env: { CNI_ARGS: "IP=10.99.0.5" } },
  { name: "CNI_ARGS IP= is the gateway", code: 102, env: { CNI_ARGS: "IP=10.88.0.1" } },
  { name: "CNI_ARGS IP= already in use", code: 102, env: { CNI_ARGS: "IP=10.88.0.2" } },
  {
    name: "ADD twice for the same container and ifname",
    code: 101,
    env: { CNI_CONTAINERID: "existing", CNI_NETNS: "@other" },
  },
  {
    name: "the pod already has an interface of that name",
    code: 101,
    env: { CNI_CONTAINERID: "newcomer", CNI_NETNS: "@other" },
  },
  {
    name: "CHECK on 0.3.1",
    code: 1,
    command: "CHECK",
    config: (b) => ({ ...b, cniVersion: "0.3.1" }),
  },
  { name: "CHECK without prevResult", code: 7, command: "CHECK" },
  { name: "GC on 1.0.0", code: 1, command: "GC" },
  {
    name: "STATUS on 0.4.0",
    code: 1,
    command: "STATUS",
    config: (b) => ({ ...b, cniVersion: "0.4.0" }),
  },
  {
    name: "the node agent is unreachable",
    code: 11,
    config: (b) => ({ ...b, ipam: { type: "ohno", daemonSocket: "/run/ohnot-no-agent.sock" } }),
  },
];

// ---------------------------------------------------------------------------------------
// Pod modes (issue 15): the macvlan/ipvlan keys and the master checks. The node has
// `uplink0` (a veth, MTU 1500), `mvslave0` (a macvlan slave of it) and no default route.
const mv = (b: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  ...b,
  mode: "macvlan",
  master: "uplink0",
  ...extra,
});
CASES.push(
  { name: "mode unknown", code: 7, config: (b) => ({ ...b, mode: "vxlan" }), msg: /mode "vxlan"/ },
  { name: "mode not a string", code: 7, config: (b) => ({ ...b, mode: 1 }), msg: /mode 1/ },
  {
    name: "macvlan: master missing",
    code: 7,
    config: (b) => mv(b, { master: "nosuch0" }),
    msg: /master "nosuch0" does not exist/,
  },
  {
    name: "macvlan: no master and no default route",
    code: 7,
    config: (b) => mv(b, { master: undefined }),
    msg: /master is not set and the node has no default route/,
  },
  {
    name: "macvlan: master is a macvlan slave",
    code: 7,
    config: (b) => mv(b, { master: "mvslave0" }),
    msg: /master "mvslave0" is itself a macvlan slave/,
  },
  {
    name: "ipvlan: master is a macvlan slave",
    code: 7,
    config: (b) => mv(b, { mode: "ipvlan", master: "mvslave0" }),
    msg: /master "mvslave0" is itself a macvlan slave/,
  },
  {
    name: "macvlan: mtu above the master's",
    code: 7,
    config: (b) => mv(b, { mtu: 9000 }),
    msg: /mtu 9000 is above the MTU of master "uplink0" \(1500\)/,
  },
  {
    name: "macvlan: master with a slash",
    code: 7,
    config: (b) => mv(b, { master: "a/b" }),
    msg: /master/,
  },
  {
    name: "macvlan: macvlanMode unknown",
    code: 7,
    config: (b) => mv(b, { macvlanMode: "l2" }),
    msg: /macvlanMode "l2"/,
  },
  {
    name: "ipvlan: ipvlanMode unknown",
    code: 7,
    config: (b) => mv(b, { mode: "ipvlan", ipvlanMode: "bridge" }),
    msg: /ipvlanMode "bridge"/,
  },
  {
    name: "macvlan: ipvlanMode given",
    code: 7,
    config: (b) => mv(b, { ipvlanMode: "l2" }),
    msg: /ipvlanMode "l2" does not apply in macvlan mode/,
  },
  {
    name: "ipvlan: a MAC asked for",
    code: 7,
    config: (b) => mv(b, { mode: "ipvlan", runtimeConfig: { mac: "02:00:00:00:00:09" } }),
    msg: /runtimeConfig.mac/,
  },
  {
    name: "macvlan: ipMasq",
    code: 7,
    config: (b) => mv(b, { ipMasq: true }),
    msg: /ipMasq true has no effect in macvlan mode/,
  },
  {
    name: "macvlan: hostShim outside bridge mode",
    code: 7,
    config: (b) => mv(b, { macvlanMode: "vepa", hostShim: true }),
    msg: /hostShim true needs macvlanMode bridge/,
  },
  {
    name: "macvlan: the pod already has an interface of that name",
    code: 101,
    config: (b) => mv(b),
    env: { CNI_CONTAINERID: "newcomer", CNI_NETNS: "@other" },
  },
  {
    name: "macvlan: CNI_NETNS is the node's own namespace",
    code: 4,
    config: (b) => mv(b),
    env: { CNI_NETNS: "@host" },
  },
  {
    name: "macvlan: STATUS with a missing master",
    code: 50,
    command: "STATUS",
    config: (b) => mv(b, { cniVersion: "1.1.0", master: "nosuch0" }),
    msg: /master "nosuch0" does not exist/,
  },
);
// ------------------------------------------------ end of the pod-mode cases (issue 15) --

Deno.test(`bad input: ${CASES.length} cases, each its error code and nothing left behind`, async (t) => {
  assert(CASES.length >= 40);
  await using node = await cniNode({ network: "badinput" });
  const pod = await node.pod("bad");
  const other = await node.pod("other");
  await node.add(other, "existing"); // 10.88.0.2, and eth0 in `other`
  // A foreign link whose name a config may give as its bridge.
  await ip(["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"], {
    netns: node.host.ns,
  });
  // A macvlan slave, which no pod mode may take as its master (issue 15).
  await ip(["link", "add", "mvslave0", "link", "uplink0", "type", "macvlan"], {
    netns: node.host.ns,
  });
  const hashed = `${node.dataDir}/pod#ns`;
  await Deno.symlink(pod.path, hashed);
  const before = await node.state();
  const podLinks = async () =>
    (await ipJson<IpLink[]>(["link", "show"], { netns: pod.ns })).map((l) => l.ifname).sort();
  const podBefore = await podLinks();

  for (const c of CASES) {
    await t.step(c.name, async () => {
      const env: Record<string, string> = {
        CNI_COMMAND: c.command ?? "ADD",
        CNI_CONTAINERID: "badinput",
        CNI_NETNS: pod.path,
        CNI_IFNAME: "eth0",
      };
      for (const [k, v] of Object.entries(c.env ?? {})) {
        if (v === null) delete env[k];
        else {
          env[k] = { "@other": other.path, "@host": node.host.path, "@hash": hashed }[v] ?? v;
        }
      }
      const base = node.conf("1.0.0");
      const config = c.config ? c.config(base) : base;
      const r = await node.call({
        command: env.CNI_COMMAND!,
        config: typeof config === "string" ? config : JSON.stringify(config),
        ...(env.CNI_CONTAINERID !== undefined ? { containerID: env.CNI_CONTAINERID } : {}),
        ...(env.CNI_NETNS !== undefined ? { netns: env.CNI_NETNS } : {}),
        ...(env.CNI_IFNAME !== undefined ? { ifname: env.CNI_IFNAME } : {}),
        ...(env.CNI_ARGS !== undefined ? { args: env.CNI_ARGS } : {}),
      });
      assert(r.code !== 0, `exit code ${r.code}`);
      assertEquals(r.json?.code, c.code, r.stdout);
      assert(typeof r.json?.msg === "string" && r.json.msg.length > 0, "a message");
      if (c.msg) assertMatch(String(r.json?.msg), c.msg);
      assert(r.stdout.length < 2048, `a short answer, not ${r.stdout.length} bytes`);
      assertEquals(r.stdout.trim().split("\n").length, 1, "one JSON document");
      assertEquals(await node.state(), before, "nothing left in the node");
      assertEquals(await podLinks(), podBefore, "nothing left in the pod");
    });
  }
});

Deno.test("an exhausted range is error 100 naming the range, and writes nothing", async () => {
  await using node = await cniNode({ network: "tiny", ranges: [[{ subnet: "10.87.0.0/30" }]] });
  const a = await node.pod();
  const b = await node.pod();
  await node.add(a, "only-one");
  const before = await node.state();
  const r = await node.call({
    command: "ADD",
    containerID: "one-too-many",
    netns: b.path,
    ifname: "eth0",
    config: node.conf(),
  });
  assertEquals([r.code, r.json?.code], [1, 100]);
  assert(String(r.json?.msg).includes("10.87.0.0/30"), String(r.json?.msg));
  assertEquals(await node.state(), before);
  // STATUS reports it: ADD cannot be served.
  const s = await node.call({ command: "STATUS", config: node.conf("1.1.0") });
  assertEquals(s.json?.code, 50);
});

Deno.test("the log file gets the error; stdout stays one document even if the log is unwritable", async () => {
  await using node = await cniNode({ network: "logs" });
  const r = await node.call({ command: "ADD", containerID: "x", netns: "/nope", ifname: "eth0" });
  assertEquals(r.json?.code, 4);
  const log = await Deno.readTextFile(node.logFile);
  assert(/ERROR \[ADD x eth0\] CNI_NETNS/.test(log), log);
  const r2 = await node.call({
    command: "ADD",
    containerID: "x",
    netns: "/nope",
    ifname: "eth0",
    env: { OHNO_LOG_FILE: "/proc/ohno-cannot/log" },
  });
  assertEquals(r2.json?.code, 4);
  assertEquals(r2.stdout.trim().split("\n").length, 1);
});

Deno.test("names ip could misread work: keyword bridges and ifnames, quotes, a CNI_NETNS with a space", async (t) => {
  await using node = await cniNode({ network: "kwnames" });
  const pod = await node.pod("kw");
  const dir = await Deno.makeTempDir({ prefix: "ohnot-netns dir " });
  try {
    const spaced = `${dir}/pod ns`;
    await Deno.symlink(pod.path, spaced);
    const clean = await node.state();
    const cases = [
      { bridge: "help", ifname: "up", netns: pod.path },
      { bridge: "up", ifname: "help", netns: pod.path },
      { bridge: "dev", ifname: "down", netns: pod.path },
      { bridge: "type", ifname: "name", netns: pod.path },
      { bridge: "master", ifname: "dev", netns: pod.path },
      { bridge: `q"uo`, ifname: "s'q", netns: pod.path },
      { bridge: "b\\", ifname: "e\\", netns: pod.path },
      { bridge: "ohno0", ifname: "eth0", netns: spaced },
    ];
    for (const c of cases) {
      await t.step(`bridge ${c.bridge}, ifname ${c.ifname}, netns ${c.netns}`, async () => {
        const config = node.conf("1.0.0", { bridge: c.bridge, promiscMode: true });
        const base = { containerID: "kw", netns: c.netns, ifname: c.ifname, config };
        const r = await node.call({ command: "ADD", ...base });
        assertEquals(r.code, 0, r.stdout);
        const ifs = (r.json?.interfaces as { name: string }[]).map((i) => i.name);
        assertEquals([ifs[0], ifs[2]], [c.bridge, c.ifname]);
        const got = (r.json?.ips as { address: string }[]).map((i) => i.address).sort();
        const inPod = await ipJson<IpAddr[]>(["addr", "show", "dev", c.ifname], { netns: pod.ns });
        const have = inPod[0]?.addr_info.filter((a) => a.scope === "global").map((a) =>
          `${a.local}/${a.prefixlen}`
        ).sort();
        assertEquals(have, got);
        const s = await node.state();
        assert(s.addresses.includes(`${c.bridge} 10.88.0.1/24`), s.addresses.join(","));
        const chk = await node.call({
          command: "CHECK",
          ...base,
          config: { ...config, prevResult: r.json },
        });
        assertEquals([chk.code, chk.stdout], [0, ""], chk.stdout);
        const d = await node.call({ command: "DEL", ...base });
        assertEquals([d.code, d.stdout], [0, ""], d.stdout);
        assertEquals(await podNames(pod.ns), ["lo"]);
        await ip(["link", "del", "dev", c.bridge], { netns: node.host.ns });
        assertEquals(await node.state(), clean);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DEL of what no ADD could have taken succeeds and touches nothing", async (t) => {
  await using node = await cniNode({ network: "delnever" });
  const pod = await node.pod("dn");
  await node.add(pod, "kept");
  const before = await node.state();
  for (
    const id of ["c".repeat(1025), "c".repeat(10240), "../etc", "never-added"]
  ) {
    await t.step(`${id.slice(0, 12)}… (${id.length} characters)`, async () => {
      for (const netns of [pod.path, ""]) {
        const r = await node.del(netns ? pod : undefined, id);
        assertEquals([r.code, r.stdout], [0, ""], r.stdout);
      }
      assertEquals(await node.state(), before);
    });
  }
  await t.step("a container ID of exactly 1,024 characters is added and deleted", async () => {
    const q = await node.pod("dn");
    const id = "d".repeat(1024);
    await node.add(q, id);
    assertEquals(node.allocations().length, before.allocations.length + 2);
    const r = await node.del(q, id);
    assertEquals([r.code, r.stdout], [0, ""], r.stdout);
    assertEquals(await node.state(), before);
  });
});

async function podNames(ns: Netns): Promise<string[]> {
  return (await ipJson<IpLink[]>(["link", "show"], { netns: ns })).map((l) => l.ifname).sort();
}

// ---------------------------------------------------------------------------------------
// The local store under faults (issue 9, defects 5–7): a lock held by another process, a
// read-only or full file system, bad entries in an otherwise valid store.json. Each is its
// error code with a message that names the file and the cause (no stack), and nothing is
// left behind. Kept apart from the corpus above.

const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Runs the plugin in a private mount namespace (`unshare --mount`) after `setup` (sh);
 * `after` runs once it has exited, its output on stderr. The mounts die with the namespace.
 */
function inPrivateMounts(setup: string, after = ""): string[] {
  const script = `set -e\n${setup}\nset +e\n"$@"\nrc=$?\n${after}\nexit $rc`;
  return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"];
}

const tempFiles = (dir: string) =>
  [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".tmp"));

/** The store's message: names what it should, and carries no JavaScript stack. */
function assertPlainMessage(r: CniReply, ...parts: string[]) {
  const msg = String(r.json?.msg);
  for (const p of parts) assert(msg.includes(p), `message should name ${p}: ${msg}`);
  assert(
    !/\n\s+at /.test(msg) && r.json?.details === undefined,
    `no stack: ${JSON.stringify(r.json)}`,
  );
}

Deno.test("local store: a lock held by another process is 11 naming the holder, within the wait", async () => {
  await using node = await cniNode({ network: "lockwait" });
  const pod = await node.pod();
  const lock = `${node.dataDir}/store.lock`;
  const before = await node.state();
  const holder = await holdLock(lock);
  try {
    const add = node.call({
      command: "ADD",
      containerID: "waiter",
      netns: pod.path,
      ifname: "eth0",
    });
    const gaveUp = new AbortController();
    const late = sleep(60_000, gaveUp.signal).then(() => undefined);
    const r = await Promise.race([add, late]);
    gaveUp.abort();
    if (!r) {
      await holder.release();
      await add;
      throw new Error("ADD was still waiting for the lock after 60 s");
    }
    assertEquals([r.code, r.json?.code], [1, 11], r.stdout);
    assertPlainMessage(r, lock, `pid ${holder.pid}`, "sleep 600");
    assertEquals(await node.state(), before, "nothing left in the node");
    assertEquals(tempFiles(node.dataDir), []);
  } finally {
    await holder.release();
  }
  // The lock free again, the same ADD goes through.
  await node.add(pod, "waiter");
});

Deno.test("local store: bad entries in store.json are 5 naming file, key and value; STATUS is 50", async () => {
  await using node = await cniNode({ network: "badentry" });
  const pod = await node.pod();
  const other = await node.pod();
  await node.add(other, "seed");
  const file = `${node.dataDir}/store.json`;
  const good = await Deno.readTextFile(file);
  const net = "/ohno/v1/networks/badentry";
  const record = JSON.stringify({ containerID: "x", ifname: "eth0", ip: "banana", createdAt: "" });
  const cases: { name: string; key: string; value: string; id?: string; shows: string }[] = [
    {
      name: "a cursor that is not an address",
      key: `${net}/cursor/0`,
      value: "zzz",
      shows: '"zzz"',
    },
    {
      name: "an ips key that is not an address",
      key: `${net}/ips/banana`,
      value: record,
      shows: "banana",
    },
    {
      name: "a handle that is not JSON",
      key: `${net}/handles/broken/eth0`,
      value: "{nope",
      id: "broken",
      shows: "{nope",
    },
  ];
  const before = await node.state();
  for (const c of cases) {
    const planted = JSON.parse(good) as { keys: Record<string, unknown> };
    planted.keys[c.key] = [c.value, 1, 1];
    const text = JSON.stringify(planted);
    await Deno.writeTextFile(file, text);
    const r = await node.call({
      command: "ADD",
      containerID: c.id ?? "victim",
      netns: pod.path,
      ifname: "eth0",
    });
    assertEquals([r.code, r.json?.code], [1, 5], `${c.name}: ${r.stdout}`);
    assertPlainMessage(r, file, c.key, c.shows);
    assertEquals(await Deno.readTextFile(file), text, `${c.name}: the store is not rewritten`);
    assertEquals((await node.state()).links, before.links, `${c.name}: nothing left`);
    if (c.id === undefined) {
      // What ADD reads is bad: STATUS says ADD cannot be served, and why.
      const s = await node.call({ command: "STATUS", config: node.conf("1.1.0") });
      assertEquals(s.json?.code, 50, `${c.name}: ${s.stdout}`);
      assertPlainMessage(s, c.key);
    }
  }
  await Deno.writeTextFile(file, good);
  assertEquals(await node.state(), before);
});

Deno.test("local store: a read-only dataDir is 5 for ADD and DEL, and STATUS reports it (50)", async () => {
  await using node = await cniNode({ network: "rostore" });
  const pod = await node.pod();
  const other = await node.pod();
  await node.add(other, "seed");
  const before = await node.state();
  const stored = await Deno.readTextFile(`${node.dataDir}/store.json`);
  const D = sq(node.dataDir);
  const wrap = inPrivateMounts(`mount --bind ${D} ${D} >&2\nmount -o remount,bind,ro ${D} >&2`);
  const add = await node.call({
    command: "ADD",
    containerID: "victim",
    netns: pod.path,
    ifname: "eth0",
    wrap,
  });
  assertEquals([add.code, add.json?.code], [1, 5], add.stdout + add.stderr);
  assertPlainMessage(add, node.dataDir, "Read-only file system");
  const del = await node.call({
    command: "DEL",
    containerID: "seed",
    netns: "",
    ifname: "eth0",
    wrap,
  });
  assertEquals(del.json?.code, 5, del.stdout);
  const status = await node.call({ command: "STATUS", config: node.conf("1.1.0"), wrap });
  assertEquals(status.json?.code, 50, status.stdout);
  assertPlainMessage(status, "unusable", "Read-only file system");
  assertEquals(await Deno.readTextFile(`${node.dataDir}/store.json`), stored);
  assertEquals((await node.state()).addresses, before.addresses);
  assertEquals(tempFiles(node.dataDir), []);
});

Deno.test("local store: a full file system is 5 naming the file, and leaves no temp file", async () => {
  await using node = await cniNode({ network: "fullstore" });
  const pod = await node.pod();
  const before = await node.state();
  const D = sq(node.dataDir);
  // A small tmpfs over dataDir, filled up; what is in it afterwards is printed to stderr.
  const wrap = inPrivateMounts(
    `mount -t tmpfs -o size=64k ohnot-full ${D} >&2\nhead -c 1M /dev/zero > ${D}/fill 2>/dev/null || true`,
    `echo "left: $(ls -A ${D} | tr '\\n' ' ')" >&2`,
  );
  const add = await node.call({
    command: "ADD",
    containerID: "victim",
    netns: pod.path,
    ifname: "eth0",
    wrap,
  });
  assertEquals([add.code, add.json?.code], [1, 5], add.stdout + add.stderr);
  assertPlainMessage(add, `${node.dataDir}/store.json`, "No space left on device");
  assertEquals(/left: (.*)/.exec(add.stderr)?.[1]?.trim(), "fill store.lock", add.stderr);
  const status = await node.call({ command: "STATUS", config: node.conf("1.1.0"), wrap });
  assertEquals(status.json?.code, 50, status.stdout);
  assertPlainMessage(status, "No space left on device");
  assertEquals(/left: (.*)/.exec(status.stderr)?.[1]?.trim(), "fill store.lock", status.stderr);
  assertEquals(await node.state(), before);
});
