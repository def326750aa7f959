/**
 * netns/netlink against the real kernel: every operation's effect is checked with what
 * `ip -j` / `bridge -j` show, and every dump is compared with theirs. All of it inside
 * namespaces the tests create; nothing touches the root namespace.
 */
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import { tempNetns } from "./support/netns.ts";
import {
  IpError,
  IpExistsError,
  IpInvalidError,
  IpNotFoundError,
  IpUnsupportedError,
  NetnsError,
} from "../netns/errors.ts";
import { ipJson, type IpLink, type IpRoute } from "../netns/ip.ts";
import { currentNetnsInode, runCommand } from "../netns/netns.ts";
import { Rtnl } from "../netns/netlink/rtnl.ts";
import type { TempNetns } from "./support/netns.ts";

type IpLinkD = IpLink & {
  linkinfo?: {
    info_kind?: string;
    info_slave_kind?: string;
    info_data?: { id?: number; port?: number; local?: string; learning?: boolean; ttl?: number };
  };
};

async function bridgeJson<T>(ns: TempNetns, args: string[]): Promise<T> {
  const r = await runCommand(ns.ns, "/usr/sbin/bridge", { args: ["-j", ...args] });
  assert(r.success, r.stderr);
  return JSON.parse(r.stdout.trim() || "[]") as T;
}

/** What both views agree a link is, from Rtnl's dump. */
function mine(l: ReturnType<Rtnl["links"]>[number]) {
  return {
    index: l.index,
    name: l.name,
    mtu: l.mtu,
    mac: l.mac,
    up: l.up,
    operstate: l.operstate,
    master: l.master,
    kind: l.kind,
    slaveKind: l.slaveKind,
    linkNetnsid: l.linkNetnsid,
  };
}

/** The same, from `ip -j -d link show`. */
function theirs(l: IpLinkD) {
  return {
    index: l.ifindex,
    name: l.ifname,
    mtu: l.mtu,
    mac: l.address,
    up: l.flags.includes("UP"),
    operstate: l.operstate,
    master: l.master,
    kind: l.linkinfo?.info_kind,
    slaveKind: l.linkinfo?.info_slave_kind,
    linkNetnsid: l.link_netnsid,
  };
}

async function compareLinks(ns: TempNetns, rtnl: Rtnl): Promise<void> {
  const want = (await ipJson<IpLinkD[]>(["-d", "link", "show"], { netns: ns.ns })).map(theirs);
  assertEquals(rtnl.links().map(mine), want);
}

Deno.test("netlink links: bridge, veth with its peer made in the pod's namespace, vxlan; dumps match ip", async () => {
  await using host = await tempNetns("h");
  await using pod = await tempNetns("p");
  const homeInode = currentNetnsInode();
  using h = Rtnl.open(host.ns);
  using p = Rtnl.open(pod.ns);
  // The socket lives in its namespace; the thread is back home.
  assertEquals(currentNetnsInode(), homeInode);

  const br0 = h.linkAdd({ kind: "bridge", name: "br0", mtu: 1450, up: true });
  const veth1 = h.linkAdd({
    kind: "veth",
    name: "veth1",
    mtu: 1450,
    master: "br0",
    up: true,
    peer: { name: "eth0", mtu: 1450, mac: "02:00:0a:01:00:02", netns: pod.ns },
  });
  const vx0 = h.linkAdd({
    kind: "vxlan",
    name: "vx0",
    id: 4242,
    port: 4789,
    local: "172.31.0.1",
    learning: false,
    ttl: 64,
    up: true,
  });

  // linkAdd returns each new link's index.
  const shown = await ipJson<IpLink[]>(["link", "show"], { netns: host.ns });
  const idx = (name: string) => shown.find((l) => l.ifname === name)?.ifindex;
  assertEquals([br0, veth1, vx0], [idx("br0"), idx("veth1"), idx("vx0")]);
  // Created in another namespace: no index here.
  assertEquals(h.linkAdd({ kind: "bridge", name: "br9", netns: pod.ns }), -1);
  assert(p.link("br9") && !h.link("br9"), "br9 was made in the pod's namespace");
  p.linkDel("br9");
  // The peer is in the pod's namespace, not the host's.
  const eth0 = p.link("eth0");
  assert(eth0, "eth0 is in the pod");
  assertEquals([eth0.mtu, eth0.mac, eth0.kind], [1450, "02:00:0a:01:00:02", "veth"]);
  assertEquals(h.link("eth0"), undefined);
  const veth = h.link("veth1")!;
  assertEquals([veth.masterIndex, veth.slaveKind], [h.index("br0"), "bridge"]);
  assert(veth.linkNetnsid !== undefined, "the host end's peer is in another namespace");

  await compareLinks(host, h);
  await compareLinks(pod, p);
  const [vx] = await ipJson<IpLinkD[]>(["-d", "link", "show", "vx0"], { netns: host.ns });
  const d = vx!.linkinfo!.info_data!;
  const v = h.link("vx0")!.vxlan!;
  assertEquals([v.id, v.port, v.local, v.learning, v.ttl], [
    d.id,
    d.port,
    d.local,
    d.learning,
    d.ttl,
  ]);
  assertEquals([d.id, d.port, d.local, d.learning, d.ttl], [4242, 4789, "172.31.0.1", false, 64]);
});

Deno.test("netlink link set: down/up, mtu, address, nomaster, rename, move to another namespace", async () => {
  await using a = await tempNetns("a");
  await using b = await tempNetns("b");
  using ra = Rtnl.open(a.ns);
  using rb = Rtnl.open(b.ns);
  ra.linkAdd({ kind: "bridge", name: "br0" });
  ra.linkAdd({ kind: "veth", name: "x0", peer: { name: "x1" } });
  ra.linkSet("x0", { up: true, mtu: 1300, mac: "02:00:00:00:00:aa", master: "br0" });
  let [x0] = await ipJson<IpLink[]>(["link", "show", "x0"], { netns: a.ns });
  assertEquals([x0!.mtu, x0!.address, x0!.master, x0!.flags.includes("UP")], [
    1300,
    "02:00:00:00:00:aa",
    "br0",
    true,
  ]);
  ra.linkSet("x0", { up: false, master: null });
  [x0] = await ipJson<IpLink[]>(["link", "show", "x0"], { netns: a.ns });
  assertEquals([x0!.master, x0!.flags.includes("UP")], [undefined, false]);
  ra.linkSet("x0", { name: "y0" });
  assertEquals((await ipJson<IpLink[]>(["link", "show", "y0"], { netns: a.ns }))[0]!.mtu, 1300);
  // Move the peer into b, by index this time, renamed on arrival is not possible in one
  // request with ip either: move, then rename in b.
  ra.linkSet(ra.index("x1"), { netns: b.ns });
  assertEquals(ra.link("x1"), undefined);
  rb.linkSet("x1", { name: "eth0", up: true });
  const [e] = await ipJson<IpLink[]>(["link", "show", "eth0"], { netns: b.ns });
  assertEquals(e!.ifname, "eth0");
  // Deleting one end of a veth takes the other with it.
  ra.linkDel("y0");
  assertEquals(rb.link("eth0"), undefined);
  await compareLinks(a, ra);
  await compareLinks(b, rb);
});

Deno.test("netlink macvlan/ipvlan made in the pod's namespace on a host link; promisc, hairpin, addrgenmode as ip shows them", async () => {
  await using host = await tempNetns("mh");
  await using pod = await tempNetns("mp");
  using h = Rtnl.open(host.ns);
  using p = Rtnl.open(pod.ns);
  h.linkAdd({ kind: "bridge", name: "br0", up: true });
  const up0 = h.linkAdd({ kind: "veth", name: "up0", master: "br0", peer: { name: "up1" } });
  const m0 = h.linkAdd({ kind: "veth", name: "m0", peer: { name: "m1" } });
  // A bridge port cannot carry a macvlan: the kernel says EBUSY, a plain IpError.
  const busy = assertThrows(
    () => h.linkAdd({ kind: "macvlan", name: "bad0", link: up0, netns: pod.ns }),
    IpError,
  );
  assertEquals(busy.errno, 16);
  h.linkAdd({
    kind: "macvlan",
    name: "eth0",
    link: "up1",
    mode: "bridge",
    mtu: 1400,
    mac: "02:00:00:00:0a:01",
    netns: pod.ns,
  });
  type D = IpLinkD & {
    inet6_addr_gen_mode?: string;
    linkinfo?: { info_data?: { mode?: string }; info_slave_data?: { hairpin?: boolean } };
  };
  const show = async (ns: TempNetns, dev: string) =>
    (await ipJson<D[]>(["-d", "link", "show", dev], { netns: ns.ns }))[0]!;
  const mv = await show(pod, "eth0");
  assertEquals([mv.linkinfo?.info_kind, mv.linkinfo?.info_data?.mode, mv.mtu, mv.address], [
    "macvlan",
    "bridge",
    1400,
    "02:00:00:00:0a:01",
  ]);
  // The mode as netlink decodes it (CNI CHECK compares it with the config's).
  assertEquals([p.link("eth0")?.kind, p.link("eth0")?.mode], ["macvlan", "bridge"]);
  try {
    h.linkAdd({ kind: "ipvlan", name: "eth1", link: m0, mode: "l3", netns: pod.ns });
    const iv = await show(pod, "eth1");
    assertEquals([iv.linkinfo?.info_kind, iv.linkinfo?.info_data?.mode], ["ipvlan", "l3"]);
    assertEquals([p.link("eth1")?.kind, p.link("eth1")?.mode], ["ipvlan", "l3"]);
  } catch (e) {
    // A kernel without ipvlan: the typed "unsupported", and ip cannot either.
    if (!(e instanceof IpUnsupportedError)) throw e;
    const r = await runCommand(host.ns, "/usr/sbin/ip", {
      args: ["link", "add", "iv9", "link", "m0", "type", "ipvlan"],
    });
    assert(!r.success, "ip made an ipvlan where netlink could not");
  }
  await compareLinks(pod, p);
  assertEquals(h.link("eth0"), undefined);

  h.linkSet(up0, { promisc: true, hairpin: true, addrGenMode: "none" });
  let d = await show(host, "up0");
  assertEquals([
    d.flags.includes("PROMISC"),
    d.linkinfo?.info_slave_data?.hairpin,
    d.inet6_addr_gen_mode,
  ], [
    true,
    true,
    "none",
  ]);
  let l = h.link(up0)!;
  assertEquals([l.promisc, l.hairpin, l.addrGenMode], [true, true, "none"]);
  h.linkSet("up0", { promisc: false, hairpin: false, addrGenMode: "eui64" });
  d = await show(host, "up0");
  assertEquals([
    d.flags.includes("PROMISC"),
    d.linkinfo?.info_slave_data?.hairpin,
    d.inet6_addr_gen_mode,
  ], [
    false,
    false,
    "eui64",
  ]);
  l = h.link(up0)!;
  assertEquals([l.promisc, l.hairpin, l.addrGenMode], [false, false, "eui64"]);
});

Deno.test("netlink addresses: add v4 and v6 (nodad, noprefixroute), dump matches ip, delete", async () => {
  await using ns = await tempNetns("ad");
  using r = Rtnl.open(ns.ns);
  r.linkAdd({ kind: "bridge", name: "br0", up: true });
  r.addrAdd("br0", "10.1.0.1/24");
  r.addrAdd("br0", "10.1.0.9/32", { noPrefixRoute: true });
  r.addrAdd("br0", "fd00:1::1/64", { noDad: true });
  type A = { ifname: string; addr_info: Record<string, unknown>[] };
  const shown = async () =>
    (await ipJson<A[]>(["addr", "show", "dev", "br0"], { netns: ns.ns }))[0]!.addr_info.map((
      a,
    ) => ({
      family: a.family === "inet" ? 4 : 6,
      address: a.local,
      prefixlen: a.prefixlen,
      scope: a.scope,
      noPrefixRoute: a.noprefixroute === true,
    }));
  const dumped = () =>
    r.addrs({ link: "br0" }).map((a) => ({
      family: a.family,
      address: a.address,
      prefixlen: a.prefixlen,
      scope: a.scope,
      noPrefixRoute: a.noPrefixRoute,
    }));
  assertEquals(dumped(), await shown());
  const all = dumped().map((a) => `${a.address}/${a.prefixlen}`);
  for (const want of ["10.1.0.1/24", "10.1.0.9/32", "fd00:1::1/64"]) {
    assert(all.includes(want), `${want} in ${all}`);
  }
  assert(!r.addrs({ link: "br0" }).find((a) => a.address === "fd00:1::1")!.tentative, "nodad");
  assert(r.addrs({ family: 4 }).every((a) => a.family === 4));

  r.addrDel("br0", "10.1.0.1/24");
  r.addrDel("br0", "fd00:1::1/64");
  assertEquals(dumped(), await shown());
  assert(!dumped().some((a) => a.address === "10.1.0.1" || a.address === "fd00:1::1"));
});

Deno.test("netlink routes: replace with via/dev/onlink/proto/table/metric/src/mtu, dump by protocol matches ip, del", async () => {
  await using ns = await tempNetns("rt");
  using r = Rtnl.open(ns.ns);
  r.linkAdd({ kind: "bridge", name: "br0", up: true });
  r.addrAdd("br0", "10.1.0.1/24");
  r.addrAdd("br0", "fd00:1::1/64", { noDad: true });
  r.routeReplace({ dst: "10.2.0.0/16", via: "10.1.0.9", protocol: 111 });
  r.routeReplace({
    dst: "10.3.0.0/24",
    via: "192.168.7.1",
    dev: "br0",
    onlink: true,
    protocol: 111,
  });
  r.routeReplace({ dst: "10.4.0.5", dev: "br0", protocol: 111, src: "10.1.0.1", mtu: 1400 });
  r.routeReplace({ dst: "fd10::/64", via: "fd00:1::9", protocol: 111, metric: 50 });
  r.routeReplace({ dst: "default", via: "10.1.0.254", protocol: "static" });
  r.routeReplace({ dst: "10.5.0.0/16", dev: "br0", table: 300, protocol: 111 });

  const view = (x: { dst: string; via?: string; gateway?: string; dev?: string }) => ({
    dst: x.dst,
    via: x.via ?? x.gateway,
    dev: x.dev,
  });
  for (const fam of [4, 6] as const) {
    const ipr = await ipJson<IpRoute[]>([`-${fam}`, "route", "show", "proto", "111"], {
      netns: ns.ns,
    });
    assertEquals(r.routes({ family: fam, protocol: 111 }).map(view), ipr.map(view), `-${fam}`);
    assert(ipr.length > 0);
  }
  const byDst = new Map(r.routes({ family: 4 }).map((x) => [x.dst, x]));
  assertEquals(byDst.get("10.3.0.0/24")!.onlink, true);
  assertEquals(byDst.get("10.4.0.5")!.scope, 253, "no gateway: scope link");
  assertEquals([byDst.get("10.4.0.5")!.src, byDst.get("10.4.0.5")!.mtu], ["10.1.0.1", 1400]);
  assertEquals([byDst.get("default")!.protocol, byDst.get("default")!.via], [4, "10.1.0.254"]);
  assertEquals(r.routes({ family: 6, protocol: 111 })[0]!.metric, 50);
  // Table 300 is not in main; asked for, it is there.
  assert(!byDst.has("10.5.0.0/16"));
  assertEquals(r.routes({ table: 300 }).map((x) => [x.dst, x.dev, x.table]), [[
    "10.5.0.0/16",
    "br0",
    300,
  ]]);
  const t300 = await ipJson<IpRoute[]>(["route", "show", "table", "300"], { netns: ns.ns });
  assertEquals(t300.map((x) => x.dst), ["10.5.0.0/16"]);

  // Replace moves the gateway, it does not add a second route.
  r.routeReplace({ dst: "10.2.0.0/16", via: "10.1.0.8", protocol: 111 });
  const moved = await ipJson<IpRoute[]>(["route", "show", "10.2.0.0/16"], { netns: ns.ns });
  assertEquals(moved.map((x) => x.gateway), ["10.1.0.8"]);

  r.routeDel({ dst: "10.2.0.0/16" });
  r.routeDel({ dst: "fd10::/64" });
  r.routeDel({ dst: "10.5.0.0/16", table: 300 });
  assertEquals(
    (await ipJson<IpRoute[]>(["route", "show", "10.2.0.0/16"], { netns: ns.ns })).length,
    0,
  );
  assertEquals(r.routes({ family: 6, protocol: 111 }), []);
  assertEquals(r.routes({ table: 300 }), []);
});

Deno.test("netlink neighbours and FDB on a vxlan device: replace, append, dumps match ip and bridge, del", async () => {
  await using ns = await tempNetns("nb");
  using r = Rtnl.open(ns.ns);
  r.linkAdd({ kind: "vxlan", name: "vx0", id: 7, port: 4789, learning: false, up: true });
  r.neighReplace("vx0", { ip: "10.244.1.0", mac: "02:00:00:00:01:00" });
  r.neighReplace("vx0", { ip: "fd10::1:0", mac: "02:00:00:00:01:06" });
  r.fdbReplace("vx0", { mac: "02:00:00:00:01:00", dst: "172.31.0.12" });
  r.fdbAppend("vx0", { mac: "00:00:00:00:00:00", dst: "172.31.0.12" });
  r.fdbAppend("vx0", { mac: "00:00:00:00:00:00", dst: "172.31.0.13" });

  type N = { dst: string; lladdr?: string; state?: string[] };
  const ipn = await ipJson<N[]>(["neigh", "show", "dev", "vx0", "nud", "permanent"], {
    netns: ns.ns,
  });
  const mineN = r.neighs({ link: "vx0" }).filter((n) => n.states.includes("PERMANENT"));
  assertEquals(
    mineN.map((n) => [n.dst, n.mac, n.states]),
    ipn.map((n) => [n.dst, n.lladdr, n.state]),
  );
  assertEquals(mineN.length, 2);

  type F = { mac: string; dst?: string; state?: string; flags?: string[] };
  const bf = await bridgeJson<F[]>(ns, ["fdb", "show", "dev", "vx0"]);
  const mineF = r.fdb({ link: "vx0" });
  assertEquals(
    mineF.map((f) => [f.mac, f.dst, f.self, f.permanent]),
    bf.map((f) => [f.mac, f.dst, f.flags?.includes("self") ?? false, f.state === "permanent"]),
  );
  assertEquals(mineF.filter((f) => f.mac === "00:00:00:00:00:00").length, 2);
  // Replacing an entry moves it to another VTEP.
  r.fdbReplace("vx0", { mac: "02:00:00:00:01:00", dst: "172.31.0.14" });
  assertEquals(
    r.fdb({ link: "vx0" }).filter((f) => f.mac === "02:00:00:00:01:00").map((f) => f.dst),
    ["172.31.0.14"],
  );

  r.neighDel("vx0", "10.244.1.0");
  r.fdbDel("vx0", { mac: "00:00:00:00:00:00", dst: "172.31.0.13" });
  const after = await bridgeJson<F[]>(ns, ["fdb", "show", "dev", "vx0"]);
  assertEquals(after.filter((f) => f.mac === "00:00:00:00:00:00").map((f) => f.dst), [
    "172.31.0.12",
  ]);
  assertEquals(
    (await ipJson<N[]>(["neigh", "show", "dev", "vx0", "nud", "permanent"], { netns: ns.ns }))
      .map((n) => n.dst),
    ["fd10::1:0"],
  );
});

Deno.test("netlink errors map onto the typed errors: exists, not found, invalid; nothing half-made", async () => {
  await using a = await tempNetns("ea");
  await using b = await tempNetns("eb");
  using r = Rtnl.open(a.ns);
  r.linkAdd({ kind: "bridge", name: "br0", up: true });
  r.addrAdd("br0", "10.1.0.1/24");

  const exists = assertThrows(() => r.linkAdd({ kind: "bridge", name: "br0" }), IpExistsError);
  assertEquals(exists.errno, 17);
  assert(exists.message.includes(a.path), exists.message);
  assertThrows(() => r.addrAdd("br0", "10.1.0.1/24"), IpExistsError);
  const gone = assertThrows(() => r.linkDel("nope0"), IpNotFoundError);
  assertEquals(gone.errno, 19);
  assertThrows(() => r.linkSet("nope0", { up: true }), IpNotFoundError);
  assertThrows(() => r.addrAdd("nope0", "10.1.0.2/24"), IpNotFoundError);
  assertThrows(() => r.addrDel("br0", "10.1.0.77/24"), IpNotFoundError);
  assertThrows(() => r.routeDel({ dst: "10.77.0.0/16" }), IpNotFoundError);
  assertThrows(() => r.neighDel("br0", "10.1.0.77"), IpNotFoundError);
  // A gateway that is not on any link, and a name the kernel refuses.
  assertThrows(() => r.routeReplace({ dst: "10.8.0.0/16", via: "192.168.99.1" }), IpInvalidError);
  assertThrows(() => r.linkAdd({ kind: "bridge", name: "a-name-far-too-long" }), IpInvalidError);

  // The veth's peer name is taken in the other namespace: the whole pair fails, and the
  // host end is not left behind.
  using rb = Rtnl.open(b.ns);
  rb.linkAdd({ kind: "bridge", name: "eth0" });
  assertThrows(
    () => r.linkAdd({ kind: "veth", name: "v0", peer: { name: "eth0", netns: b.ns } }),
    IpExistsError,
  );
  assertEquals(r.link("v0"), undefined);
  assertEquals(r.link("nope0"), undefined);

  r.close();
  assertThrows(() => r.links(), NetnsError);
});

Deno.test("netlink sockets in two namespaces are independent; the thread never stays in one", async () => {
  await using a = await tempNetns("ia");
  await using b = await tempNetns("ib");
  const home = currentNetnsInode();
  using ra = Rtnl.open(a.ns);
  using rb = Rtnl.open(b.ns);
  ra.linkAdd({ kind: "bridge", name: "only-a" });
  assertEquals(rb.link("only-a"), undefined);
  assertEquals(ra.links().map((l) => l.name).sort(), ["lo", "only-a"]);
  assertEquals(rb.links().map((l) => l.name), ["lo"]);
  assertEquals(currentNetnsInode(), home);
  // Many requests on one socket: sequence numbers keep answers apart.
  for (let i = 0; i < 50; i++) ra.addrAdd("only-a", `10.9.${i}.1/24`);
  assertEquals(ra.addrs({ link: "only-a", family: 4 }).length, 50);
  // A route through a link that is down is refused (ENETDOWN).
  const down = assertThrows(
    () => ra.routeReplace({ dst: "10.99.0.0/24", dev: "only-a" }),
    IpInvalidError,
  );
  assertEquals(down.errno, 100);
  // A dump larger than one datagram (the kernel sends at most ~32 KiB at a time).
  ra.linkSet("only-a", { up: true });
  for (let i = 0; i < 1500; i++) {
    ra.routeReplace({ dst: `10.${100 + (i >> 8)}.${i & 255}.0/24`, dev: "only-a", protocol: 99 });
  }
  const mineR = ra.routes({ protocol: 99 }).map((x) => x.dst);
  const ipR = (await ipJson<IpRoute[]>(["route", "show", "proto", "99"], { netns: a.ns }))
    .map((x) => x.dst);
  assertEquals(mineR.length, 1500);
  assertEquals(mineR, ipR);
});
