/**
 * Cluster IPAM allocation throughput and latency at concurrency 1 and 32, for the etcd
 * store (a real etcd on loopback) and the local file store, in one process as the node
 * agent runs it (grouped commits, group.ts), with the allocations per commit, the bare
 * commit that is the floor of one allocation, and `ipam check` after each run. The reference host-local (one process per allocation, as a runtime
 * runs it) is measured in the same run for scale.
 */
import { ClusterIpam } from "../../ipam/cluster.ts";
import { EtcdStore } from "../../ipam/etcd.ts";
import { LocalStore } from "../../ipam/local.ts";
import type { Store } from "../../ipam/store.ts";
import { startEtcd } from "../support/etcd.ts";
import { callCni, REF_CNI_DIR } from "../support/ohno.ts";
import { ms, printTable, summarize, timeIt } from "./stats.ts";

/**
 * `total` calls of `one`, `width` at a time: calls per second and latency. A call that
 * returns a number gives its own latency (the part of it that is measured).
 */
async function run(width: number, total: number, one: (i: number) => Promise<number | void>) {
  const lat: number[] = [];
  let next = 0;
  const wall = await timeIt(() =>
    Promise.all(Array.from({ length: width }, async () => {
      while (next < total) {
        const i = next++;
        let own: number | void = undefined;
        const t = await timeIt(async () => own = await one(i));
        lat.push(typeof own === "number" ? own : t);
      }
    }))
  );
  const s = summarize(lat);
  return { perSec: (total / wall) * 1000, p50: s.p50, p99: s.p99 };
}

/**
 * One store's allocations at `width` in flight, then the consistency check. At width 1 a
 * bare commit of the same shape (an address, its reservation and a handle compared
 * absent; two records written) is timed after each allocation: the floor one
 * transaction on this store costs, interleaved so both see the same machine.
 */
async function benchStore(label: string, make: () => Promise<Store>, width: number, total: number) {
  await using store = await make();
  const ipam = new ClusterIpam(store);
  await ipam.addPool("10.100.0.0/16");
  await ipam.claimBlocks("bench-node");
  const tag = `w${width}-${Date.now()}`;
  const floor: number[] = [];
  const value = JSON.stringify({ containerID: `${tag}-0000`, ifname: "eth0", ip: "10.100.0.0" });
  let floorTime = 0;
  const r = await run(width, total, async (i) => {
    const t = await timeIt(() =>
      ipam.allocate({ node: "bench-node", containerID: `${tag}-${i}`, ifname: "eth0" })
    );
    if (width > 1) return t;
    const k = `/bench/${tag}/${i}`;
    floor.push(
      await timeIt(() =>
        store.commit({
          compare: [{ key: `${k}/ip`, absent: true }, { key: `${k}/r`, absent: true }, {
            key: `${k}/h`,
            absent: true,
          }],
          mutations: [{ put: `${k}/ip`, value }, { put: `${k}/h`, value }],
        })
      ),
    );
    floorTime += floor.at(-1)!;
    return t;
  });
  // alloc/s counts the allocations' time only.
  if (floorTime) r.perSec = (total / (total / r.perSec * 1000 - floorTime)) * 1000;
  const report = await ipam.check();
  const addresses = (await ipam.list({ node: "bench-node" })).length;
  for (let i = 0; i < total; i++) {
    await ipam.release({ containerID: `${tag}-${i}`, ifname: "eth0" });
  }
  const s = ipam.allocator("bench-node").stats;
  return [
    label,
    String(width),
    r.perSec.toFixed(0),
    ms(r.p50),
    ms(r.p99),
    floor.length ? ms(summarize(floor).p50) : "",
    (s.grouped / Math.max(1, s.commits)).toFixed(1),
    `${report.ok && addresses === total ? "clean" : "PROBLEMS"} (${addresses} addresses)`,
  ];
}

export async function benchIpam(): Promise<void> {
  await using etcd = await startEtcd();
  const dir = await Deno.makeTempDir({ prefix: "ohnot-ipambench-" });
  const rows: string[][] = [];
  try {
    for (const width of [1, 32]) {
      const total = width === 1 ? 200 : 400;
      rows.push(
        await benchStore(
          "etcd store",
          () => Promise.resolve(new EtcdStore({ endpoints: etcd.endpoints })),
          width,
          total,
        ),
      );
      rows.push(
        await benchStore(
          "local store (fsync)",
          () => Promise.resolve(new LocalStore(`${dir}/l${width}`)),
          width,
          total,
        ),
      );
      rows.push(
        await benchStore(
          "local store (no fsync)",
          () => Promise.resolve(new LocalStore(`${dir}/n${width}`, { durable: false })),
          width,
          total,
        ),
      );
      // Reference: host-local, one process per allocation.
      const conf = {
        cniVersion: "1.0.0",
        name: "hlbench",
        type: "bridge",
        ipam: {
          type: "host-local",
          dataDir: `${dir}/hl${width}`,
          ranges: [[{ subnet: "10.101.0.0/16" }]],
        },
      };
      const n = width === 1 ? 100 : 200;
      const r = await run(width, n, async (i) => {
        const res = await callCni({
          command: "ADD",
          bin: `${REF_CNI_DIR}/host-local`,
          containerID: `hl-${width}-${i}`,
          netns: "/proc/self/ns/net",
          ifname: "eth0",
          config: conf,
        });
        if (res.code !== 0) throw new Error(res.stdout);
      });
      rows.push([
        "host-local (process per call)",
        String(width),
        r.perSec.toFixed(0),
        ms(r.p50),
        ms(r.p99),
        "",
        "",
        "",
      ]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  printTable("cluster IPAM allocations (one process, as the agent runs it)", [
    "store",
    "concurrency",
    "alloc/s",
    "p50 ms",
    "p99 ms",
    "bare commit p50",
    "per commit",
    "ipam check",
  ], rows);
}
