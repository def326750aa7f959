/**
 * host-gw routing cost, in a lab node namespace:
 * - a full reconcile with P peers (first programming, steady state, one peer changed),
 *   next to the naive way (one `ip route replace` process per route) for the same routes;
 * - convergence of a join: a peer event given to a running RouteSync until its routes are
 *   in the kernel, p50/p99 over 20 joins, next to one bare `ip route replace`.
 * The etcd-to-kernel convergence (block claim → route on every node) is the wiring's bench.
 */
import { ip } from "../../netns/ip.ts";
import { labUp } from "../../lab/topology.ts";
import { HostGwBackend } from "../../daemon/routing/hostgw.ts";
import { RouteSync } from "../../daemon/routing/sync.ts";
import type { Peer, ReconcileReport } from "../../daemon/routing/types.ts";
import { ms, printTable, ratio, summarize, timeIt } from "./stats.ts";

/** `count` peers with on-link next hops and a block per family (also for the vxlan bench). */
export function fakePeers(count: number, offset = 0): Peer[] {
  return Array.from({ length: count }, (_, j) => {
    const i = j + offset;
    return {
      node: `peer${i}`,
      // Any on-link address will do as a next hop; the kernel does not ask it anything.
      ips: [`172.31.0.${20 + (i % 170)}`, `fd00:172:31::${(20 + (i % 170)).toString(16)}`],
      blocks: [
        `10.${100 + (i >> 8)}.${i & 255}.0/24`,
        `fd10:${(100 + (i >> 8)).toString(16)}:${(i & 255).toString(16)}::/64`,
      ],
    };
  });
}

export async function benchRoutes(): Promise<void> {
  await using lab = await labUp({ name: "benchrt", nodes: 1, prefix: `ohnob-${Deno.pid}-` });
  const netns = lab.nodes[0]!.ns;
  const local: Peer = {
    node: "node1",
    ips: ["172.31.0.11", "fd00:172:31::11"],
    blocks: ["10.99.1.0/24"],
  };
  const rows: string[][] = [];
  for (const count of [10, 100, 500]) {
    const peers = fakePeers(count);
    const backend = new HostGwBackend({ netns });
    const first = await timeIt(() => backend.reconcile({ local, peers }));
    const steady: number[] = [];
    const change: number[] = [];
    for (let i = 0; i < 10; i++) {
      steady.push(await timeIt(() => backend.reconcile({ local, peers })));
      const moved = peers.map((p, j) => (j === i ? { ...p, ips: ["172.31.0.250", p.ips[1]!] } : p));
      change.push(await timeIt(() => backend.reconcile({ local, peers: moved })));
      await backend.reconcile({ local, peers });
    }
    await backend.cleanup();
    // The naive way: one ip process per route.
    const naive = await timeIt(async () => {
      for (const p of peers) {
        for (const b of p.blocks) {
          await ip([
            "route",
            "replace",
            b,
            "via",
            b.includes(":") ? p.ips[1]! : p.ips[0]!,
            "proto",
            "111",
          ], { netns });
        }
      }
    });
    await backend.cleanup();
    rows.push([
      `${count} peers (${count * 2} routes)`,
      ms(first),
      ms(naive),
      ratio(first, naive),
      ms(summarize(steady).p50),
      ms(summarize(change).p50),
    ]);
  }
  printTable("host-gw reconcile (ms): ohno (rtnetlink) vs one ip process per route", [
    "table",
    "first",
    "naive (per route)",
    "ratio",
    "steady p50",
    "1 peer moved p50",
  ], rows);

  // Join convergence with a running loop (100 peers already programmed): from the event
  // to the end of the reconcile that added the new peer's routes.
  const waiters: ((r: ReconcileReport) => void)[] = [];
  const sync = new RouteSync({
    backend: new HostGwBackend({ netns }),
    local,
    peers: fakePeers(100),
    onReconcile: ({ report }) => {
      if (report) { for (const w of [...waiters]) w(report); }
    },
  });
  const stop = new AbortController();
  const running = sync.run(stop.signal);
  await sync.synced;
  const joins: number[] = [];
  const single: number[] = [];
  for (let i = 0; i < 20; i++) {
    const peer = fakePeers(1, 1000 + i)[0]!;
    joins.push(
      await timeIt(() =>
        new Promise<void>((resolve) => {
          const w = (r: ReconcileReport) => {
            if (r.added.filter((a) => a.node === peer.node).length !== 2) return;
            waiters.splice(waiters.indexOf(w), 1);
            resolve();
          };
          waiters.push(w);
          sync.apply([{ type: "put", peer }]);
        })
      ),
    );
    single.push(
      await timeIt(() =>
        ip(["route", "replace", `10.200.${i}.0/24`, "via", "172.31.0.99"], { netns })
      ),
    );
  }
  stop.abort();
  await running;
  const j = summarize(joins);
  const s = summarize(single);
  printTable("host-gw join convergence: peer event → routes in the kernel, 20 joins (ms)", [
    "what",
    "p50",
    "p99",
  ], [
    ["RouteSync join (full reconcile, 100+ peers)", ms(j.p50), ms(j.p99)],
    ["one bare `ip route replace`", ms(s.p50), ms(s.p99)],
    ["ratio", ratio(j.p50, s.p50), ratio(j.p99, s.p99)],
  ]);
}
