/**
 * rtnetlink vs ip processes, the same kernel work three ways in the same run: N veth pairs
 * with the pod end created in a "pods" namespace, each with its host route, the pod's
 * address, link up and a route (6 operations a pair, what a CNI ADD does), then the
 * teardown (one link delete a pair):
 * - netns/netlink's {@link Rtnl} (one socket per namespace, opened in the timed section);
 * - one `ip -batch -` process per namespace;
 * - one `ip` process per operation.
 * Each method's result is checked (N pairs, addressed and routed) before it counts.
 *
 * Usage: ./dev bench netlink
 */
import { ip, IpBatch, ipJson } from "../../netns/ip.ts";
import { Rtnl } from "../../netns/netlink/rtnl.ts";
import { type TempNetns, tempNetns } from "../support/netns.ts";
import { ms, note, printTable, ratio, summarize, timeIt } from "./stats.ts";

/** One pair's operations as ip words: [namespace side, words]. */
function ops(i: number, pod: TempNetns): ["host" | "pod", string[]][] {
  const hi = i >> 8, lo = i & 255;
  return [
    ["host", ["link", "add", `h${i}`, "type", "veth", "peer", "name", `p${i}`, "netns", pod.name]],
    ["host", ["link", "set", `h${i}`, "up"]],
    ["host", ["route", "replace", `10.${200 + hi}.${lo}.2/32`, "dev", `h${i}`, "proto", "111"]],
    ["pod", ["addr", "add", `10.${200 + hi}.${lo}.2/24`, "dev", `p${i}`]],
    ["pod", ["link", "set", `p${i}`, "up"]],
    [
      "pod",
      [
        "route",
        "replace",
        `10.${220 + hi}.${lo}.0/24`,
        "via",
        `10.${200 + hi}.${lo}.1`,
        "dev",
        `p${i}`,
        "onlink",
        "proto",
        "111",
      ],
    ],
  ];
}

function viaNetlink(n: number, host: TempNetns, pod: TempNetns): void {
  using h = Rtnl.open(host.ns);
  using p = Rtnl.open(pod.ns);
  for (let i = 0; i < n; i++) {
    const hi = i >> 8, lo = i & 255;
    // As a caller would: the index linkAdd returns, and the pod end's looked up once.
    const hIdx = h.linkAdd({ kind: "veth", name: `h${i}`, peer: { name: `p${i}`, netns: pod.ns } });
    h.linkSet(hIdx, { up: true });
    h.routeReplace({ dst: `10.${200 + hi}.${lo}.2/32`, dev: hIdx, protocol: 111 });
    const pIdx = p.index(`p${i}`);
    p.addrAdd(pIdx, `10.${200 + hi}.${lo}.2/24`);
    p.linkSet(pIdx, { up: true });
    p.routeReplace({
      dst: `10.${220 + hi}.${lo}.0/24`,
      via: `10.${200 + hi}.${lo}.1`,
      dev: pIdx,
      onlink: true,
      protocol: 111,
    });
  }
}

async function viaBatch(n: number, host: TempNetns, pod: TempNetns): Promise<void> {
  const hb = new IpBatch();
  const pb = new IpBatch();
  for (let i = 0; i < n; i++) {
    for (const [side, words] of ops(i, pod)) (side === "host" ? hb : pb).add(...words);
  }
  await hb.run({ netns: host.ns });
  await pb.run({ netns: pod.ns });
}

async function viaProcesses(n: number, host: TempNetns, pod: TempNetns): Promise<void> {
  for (let i = 0; i < n; i++) {
    for (const [side, words] of ops(i, pod)) {
      await ip(words, { netns: side === "host" ? host.ns : pod.ns });
    }
  }
}

async function teardownNetlink(n: number, host: TempNetns): Promise<void> {
  using h = Rtnl.open(host.ns);
  for (let i = 0; i < n; i++) h.linkDel(`h${i}`);
  await Promise.resolve();
}

async function teardownBatch(n: number, host: TempNetns): Promise<void> {
  const b = new IpBatch();
  for (let i = 0; i < n; i++) b.add("link", "del", `h${i}`);
  await b.run({ netns: host.ns });
}

async function teardownProcesses(n: number, host: TempNetns): Promise<void> {
  for (let i = 0; i < n; i++) await ip(["link", "del", `h${i}`], { netns: host.ns });
}

/** The work is done: N pod links up and addressed, N routes of protocol 111 on each side. */
async function check(n: number, host: TempNetns, pod: TempNetns, method: string): Promise<void> {
  const [links, hostRoutes, podRoutes, addrs] = await Promise.all([
    ipJson<{ ifname: string; flags: string[] }[]>(["link", "show", "up"], { netns: pod.ns }),
    ipJson<unknown[]>(["route", "show", "proto", "111"], { netns: host.ns }),
    ipJson<unknown[]>(["route", "show", "proto", "111"], { netns: pod.ns }),
    ipJson<{ ifname: string; addr_info: unknown[] }[]>(["-4", "addr", "show"], { netns: pod.ns }),
  ]);
  const podLinks = links.filter((l) => /^p\d+$/.test(l.ifname)).length;
  const podAddrs = addrs.filter((a) => /^p\d+$/.test(a.ifname))
    .reduce((s, a) => s + a.addr_info.length, 0);
  const got = [podLinks, hostRoutes.length, podRoutes.length, podAddrs];
  if (got.some((x) => x !== n)) {
    throw new Error(`${method}: expected ${n} of each, got links/routes/routes/addrs ${got}`);
  }
}

async function empty(host: TempNetns, pod: TempNetns): Promise<void> {
  const [h, p] = await Promise.all([
    ipJson<unknown[]>(["link", "show"], { netns: host.ns }),
    ipJson<unknown[]>(["link", "show"], { netns: pod.ns }),
  ]);
  if (h.length !== 1 || p.length !== 1) throw new Error("teardown left links behind");
}

export async function benchNetlink(): Promise<void> {
  await using host = await tempNetns("bh");
  await using pod = await tempNetns("bp");
  const rows: string[][] = [];
  const methods = [
    {
      name: "netlink",
      up: (n: number) => Promise.resolve(viaNetlink(n, host, pod)),
      down: teardownNetlink,
    },
    { name: "ip -batch", up: (n: number) => viaBatch(n, host, pod), down: teardownBatch },
    {
      name: "ip per op",
      up: (n: number) => viaProcesses(n, host, pod),
      down: teardownProcesses,
    },
  ];
  // One pair is a CNI ADD's work; more show how it scales.
  for (const n of [1, 10, 50]) {
    const rounds = n >= 50 ? 3 : 7;
    const up: Record<string, number[]> = {};
    const down: Record<string, number[]> = {};
    for (let r = 0; r < rounds; r++) {
      // Interleaved, so a noisy moment hurts every method alike.
      for (const m of methods) {
        (up[m.name] ??= []).push(await timeIt(() => m.up(n)));
        await check(n, host, pod, m.name);
        (down[m.name] ??= []).push(await timeIt(() => m.down(n, host)));
        await empty(host, pod);
      }
    }
    const p50 = (x: number[]) => summarize(x).p50;
    const [nl, bt, pr] = methods.map((m) => p50(up[m.name]!));
    const [nlD, btD, prD] = methods.map((m) => p50(down[m.name]!));
    rows.push([
      `${n} pair${n === 1 ? "" : "s"} (${n * 6} ops)`,
      ms(nl!),
      ms(bt!),
      ms(pr!),
      ratio(nl!, bt!),
      ratio(nl!, pr!),
      `${((nl! * 1000) / (n * 6)).toFixed(0)} µs`,
    ]);
    rows.push([
      `  teardown (${n} link del)`,
      ms(nlD!),
      ms(btD!),
      ms(prD!),
      ratio(nlD!, btD!),
      ratio(nlD!, prD!),
      `${((nlD! * 1000) / n).toFixed(0)} µs`,
    ]);
  }
  printTable(
    "rtnetlink vs ip: veth pair (peer made in the pod namespace) + host route + pod address, up, route; p50 of 7 (3 for 50 pairs), ms",
    [
      "work",
      "netlink",
      "ip -batch",
      "ip per op",
      "netlink/batch",
      "netlink/per-op",
      "netlink per op",
    ],
    rows,
  );
  note("(each method's result checked with ip -j before it counted)");
  await benchRoutes(host, 5);
}

/**
 * The cost of a request itself, where the kernel's part is small: N route replaces (then
 * deletes) on one link, the three ways.
 */
async function benchRoutes(ns: TempNetns, rounds: number): Promise<void> {
  const n = 100;
  const route = (i: number) => `10.${100 + (i >> 8)}.${i & 255}.0/24`;
  using r = Rtnl.open(ns.ns);
  r.linkAdd({ kind: "bridge", name: "rt0", up: true });
  r.addrAdd("rt0", "172.30.0.1/24");
  const words = (i: number, op: string) => [
    "route",
    op,
    route(i),
    ...(op === "replace" ? ["via", "172.30.0.9"] : []),
    "proto",
    "111",
  ];
  const methods: [string, (op: "replace" | "del") => Promise<void>][] = [
    ["netlink", async (op) => {
      // A socket per run, as a CNI call or a reconcile would open one.
      using s = Rtnl.open(ns.ns);
      for (let i = 0; i < n; i++) {
        if (op === "replace") {
          s.routeReplace({ dst: route(i), via: "172.30.0.9", protocol: 111 });
        } else s.routeDel({ dst: route(i), protocol: 111 });
      }
      await Promise.resolve();
    }],
    ["ip -batch", async (op) => {
      const b = new IpBatch();
      for (let i = 0; i < n; i++) b.add(...words(i, op));
      await b.run({ netns: ns.ns });
    }],
    ["ip per op", async (op) => {
      for (let i = 0; i < n; i++) await ip(words(i, op), { netns: ns.ns });
    }],
  ];
  const add: Record<string, number[]> = {};
  const del: Record<string, number[]> = {};
  for (let k = 0; k < rounds; k++) {
    for (const [name, run] of methods) {
      (add[name] ??= []).push(await timeIt(() => run("replace")));
      const got = r.routes({ protocol: 111 }).length;
      if (got !== n) throw new Error(`${name}: ${got} routes of ${n}`);
      (del[name] ??= []).push(await timeIt(() => run("del")));
      if (r.routes({ protocol: 111 }).length !== 0) throw new Error(`${name}: routes left`);
    }
  }
  r.linkDel("rt0");
  const p50 = (x: number[]) => summarize(x).p50;
  const row = (what: string, t: Record<string, number[]>) => {
    const [nl, bt, pr] = methods.map(([name]) => p50(t[name]!));
    return [
      what,
      ms(nl!),
      ms(bt!),
      ms(pr!),
      ratio(nl!, bt!),
      ratio(nl!, pr!),
      `${((nl! * 1000) / n).toFixed(0)} µs`,
    ];
  };
  printTable(`rtnetlink vs ip: ${n} routes on one link; p50 of ${rounds} (ms)`, [
    "work",
    "netlink",
    "ip -batch",
    "ip per op",
    "netlink/batch",
    "netlink/per-op",
    "netlink per op",
  ], [row(`${n} route replace`, add), row(`${n} route del`, del)]);
}
