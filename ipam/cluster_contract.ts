/**
 * The behaviour of ClusterIpam, run against any Store: memory and local here
 * (`ipam/cluster_test.ts`), etcd in `tests/ipam_cluster_test.ts`.
 * @module
 */

import { assert, assertEquals, assertRejects } from "../tests/support/assert.ts";
import { ClusterIpam } from "./cluster.ts";
import {
  AddressUnavailableError,
  HandleExistsError,
  IpamConfigError,
  IpamError,
  IpamExhaustedError,
} from "./errors.ts";
import { applyPeerChanges, type Peer } from "./cluster.ts";
import type { Store } from "./store.ts";
import { type ContractCase, contractSuite } from "../tests/support/contract.ts";

export function clusterContract(
  name: string,
  make: () => Promise<Store>,
  opts: { skip?: string; teardown?: () => Promise<void> } = {},
): void {
  const cases: ContractCase<ClusterIpam>[] = [];
  const test = (title: string, fn: (ipam: ClusterIpam) => Promise<void>) =>
    cases.push({ title, fn });
  const att = (id: string, node = "node-a") => ({ containerID: id, ifname: "eth0", node });

  test("pools: default block sizes, overlap refused, adding twice is a no-op", async (ipam) => {
    const v4 = await ipam.addPool("10.244.0.0/16");
    const v6 = await ipam.addPool("fd00:244::/48");
    assertEquals([v4.blockPrefix, v6.blockPrefix], [24, 64]);
    await ipam.addPool("10.244.0.0/16");
    await assertRejects(() => ipam.addPool("10.244.128.0/17"), IpamConfigError, "overlaps");
    await assertRejects(() => ipam.addPool("10.245.0.0/16", 31), IpamConfigError, "/31");
    assertEquals((await ipam.pools()).map((p) => p.cidr).sort(), [
      "10.244.0.0/16",
      "fd00:244::/48",
    ]);
  });

  test("blocks: a node's claim is idempotent and survives its restart", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.addPool("fd00:244::/48");
    const first = await ipam.claimBlocks("node-a");
    assertEquals(first.length, 2);
    const again = await new ClusterIpam(ipam.store).claimBlocks("node-a");
    assertEquals(again.map((b) => b.cidr).sort(), first.map((b) => b.cidr).sort());
    const other = await ipam.claimBlocks("node-b");
    assert(
      !other.some((b) => first.some((f) => f.cidr === b.cidr)),
      "different nodes, different blocks",
    );
  });

  test("dual stack: one IPv4 and one IPv6 address, with the block's gateway", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.addPool("fd00:244::/48");
    const blocks = await ipam.claimBlocks("node-a");
    const got = await ipam.allocate({ ...att("c1"), podNamespace: "ns", podName: "p" });
    assertEquals(got.map((g) => g.family), [4, 6]);
    for (const g of got) {
      const b = blocks.find((x) => x.cidr === g.block)!;
      assert(b, `address ${g.address} in a block of node-a`);
      assertEquals(g.address.split("/")[1], b.cidr.split("/")[1]);
    }
    assert(got[0]!.gateway.endsWith(".1"), got[0]!.gateway);
    assert(got[0]!.ip.endsWith(".2"), got[0]!.ip);
    await assertRejects(() => ipam.allocate(att("c1")), HandleExistsError);
    const rows = await ipam.list({ node: "node-a" });
    assertEquals(rows.map((r) => [r.podNamespace, r.podName, r.containerID]), [["ns", "p", "c1"], [
      "ns",
      "p",
      "c1",
    ]]);
  });

  test("a /48 IPv6 pool of /64 blocks works without enumerating", async (ipam) => {
    await ipam.addPool("fd00:48::/48");
    const [b] = await ipam.claimBlocks("node-a");
    const [a1] = await ipam.allocate(att("c1"));
    const [a2] = await ipam.allocate(att("c2"));
    assertEquals([a1!.address.endsWith("::2/64"), a2!.address.endsWith("::3/64")], [true, true]);
    const usage = (await ipam.blocks()).find((x) => x.cidr === b!.cidr)!;
    assertEquals(usage.capacity, String((1n << 64n) - 2n));
    assertEquals(usage.used, 2);
  });

  test("a full block leads to another block; an exhausted pool is an error naming it, writing nothing", async (ipam) => {
    await ipam.addPool("10.99.0.0/29", 30); // two /30 blocks with one pod address each
    const a = await ipam.allocate(att("c1"));
    const b = await ipam.allocate(att("c2"));
    assert(a[0]!.block !== b[0]!.block, "the second address came from a second block");
    const before = await ipam.check();
    const e = await assertRejects(() => ipam.allocate(att("c3")), IpamExhaustedError);
    assert(e.message.includes("10.99.0.0/29"), e.message);
    assertEquals(await ipam.check(), before);
    // Another node finds no block either.
    await assertRejects(() => ipam.allocate(att("c4", "node-b")), IpamExhaustedError);
  });

  test("static requests: in the node's block, in a free block, and the refusals", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    const mine = (await ipam.claimBlocks("node-a"))[0]!;
    const prefix = mine.cidr.split(".").slice(0, 3).join(".");
    const [s] = await ipam.allocate({ ...att("s1"), requestedIPs: [`${prefix}.77`] });
    assertEquals(s!.ip, `${prefix}.77`);
    await assertRejects(
      () => ipam.allocate({ ...att("s2"), requestedIPs: [`${prefix}.77`] }),
      AddressUnavailableError,
      "in use",
    );
    await assertRejects(
      () => ipam.allocate({ ...att("s3", "node-b"), requestedIPs: [`${prefix}.78`] }),
      AddressUnavailableError,
      "node-a",
    );
    await assertRejects(
      () => ipam.allocate({ ...att("s4"), requestedIPs: ["10.9.9.9"] }),
      AddressUnavailableError,
      "not in any pool",
    );
    await assertRejects(
      () => ipam.allocate({ ...att("s5"), requestedIPs: [`${prefix}.1`] }),
      AddressUnavailableError,
      "gateway",
    );
    await ipam.reserve(`${prefix}.80`, "printer");
    await assertRejects(
      () => ipam.allocate({ ...att("s6"), requestedIPs: [`${prefix}.80`] }),
      AddressUnavailableError,
      "reserved",
    );
    await assertRejects(() => ipam.reserve(`${prefix}.77`), AddressUnavailableError, "allocated");
    // An address in a block nobody holds: the block is claimed for the node.
    const [far] = await ipam.allocate({ ...att("s7"), requestedIPs: ["10.244.250.9"] });
    assertEquals(far!.block, "10.244.250.0/24");
    assertEquals(
      (await ipam.nodeBlocks("node-a")).map((b) => b.cidr).sort(),
      [mine.cidr, "10.244.250.0/24"].sort(),
    );
    assert((await ipam.check()).ok);
  });

  test("reservations keep addresses out of allocation", async (ipam) => {
    await ipam.addPool("10.98.0.0/24", 29); // .2–.6 for pods in the first block
    const [b] = await ipam.claimBlocks("node-a");
    const base = b!.cidr.split("/")[0]!.split(".").map(Number);
    const at = (n: number) => [...base.slice(0, 3), base[3]! + n].join(".");
    await ipam.reserve(at(2));
    await ipam.reserve(at(3));
    const [x] = await ipam.allocate(att("r1"));
    assertEquals(x!.ip, at(4));
    assertEquals(await ipam.unreserve(at(2)), true);
    assertEquals((await ipam.reservations()).map((r) => r.ip), [at(3)]);
  });

  test("group commit: 64 allocations at once share a few transactions, each address once", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.addPool("fd00:244::/48");
    await ipam.claimBlocks("node-a");
    const got = await Promise.all(
      Array.from({ length: 64 }, (_, i) => ipam.allocate(att(`g${i}`))),
    );
    const stats = ipam.allocator("node-a").stats;
    assertEquals(stats.grouped, 64);
    assert(stats.commits <= 8, `64 allocations took ${stats.commits} commits`);
    const ips = got.flat().map((a) => a.ip);
    assertEquals(ips.length, 128);
    assertEquals(new Set(ips).size, 128, "no address twice");
    assertEquals((await ipam.list()).length, 128);
    const report = await ipam.check();
    assert(report.ok, JSON.stringify(report));
  });

  test("group commit: a cache another writer made stale costs a retry, never a duplicate", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.claimBlocks("node-a");
    await ipam.allocate(att("first")); // the cache is read
    // Another process (the CLI) takes the address this cache would hand out next, and
    // reserves the one after it.
    const other = new ClusterIpam(ipam.store);
    const [taken] = await other.allocate(att("cli"));
    const next = taken!.ip.replace(/\d+$/, (n) => String(Number(n) + 1));
    await other.reserve(next, "test");
    const [mine] = await ipam.allocate(att("second"));
    assert(mine!.ip !== taken!.ip && mine!.ip !== next, `${mine!.ip} was taken or reserved`);
    assert(ipam.allocator("node-a").stats.conflicts >= 1, "the stale cache was noticed");
    const report = await ipam.check();
    assert(report.ok, JSON.stringify(report));
  });

  test("group commit: an attachment that already has addresses fails alone, its group goes on", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.allocate(att("dup"));
    const results = await Promise.allSettled(
      ["dup", "x1", "x2", "dup"].map((id) => ipam.allocate(att(id))),
    );
    assertEquals(results.map((r) => r.status), ["rejected", "fulfilled", "fulfilled", "rejected"]);
    for (const r of [results[0]!, results[3]!]) {
      assert((r as PromiseRejectedResult).reason instanceof HandleExistsError);
    }
    assertEquals((await ipam.list()).length, 3);
    assert((await ipam.check()).ok);
  });

  test("group commit: blocks that fill up inside a group are claimed, and released addresses reused", async (ipam) => {
    await ipam.addPool("10.97.0.0/24", 29); // five pod addresses a block
    const got = await Promise.all(
      Array.from({ length: 12 }, (_, i) => ipam.allocate(att(`f${i}`))),
    );
    const ips = got.flat().map((a) => a.ip);
    assertEquals(new Set(ips).size, 12);
    assertEquals((await ipam.nodeBlocks("node-a")).length, 3);
    assert((await ipam.check()).ok);
    // Fill the third block, release one address: the next allocation reuses it from the
    // cache (no read of the store, no claim).
    for (let i = 12; i < 15; i++) await ipam.allocate(att(`f${i}`));
    const [freed] = await ipam.release(att("f3"));
    const alone = ipam.allocator("node-a").stats.alone;
    const [again] = await ipam.allocate(att("f-again"));
    assertEquals(again!.ip, freed);
    assertEquals(ipam.allocator("node-a").stats.alone, alone);
    assertEquals((await ipam.nodeBlocks("node-a")).length, 3);
    assert((await ipam.check()).ok);
  });

  test("release is idempotent; GC keeps exactly the valid attachments of the node", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    for (const id of ["a", "b", "c"]) await ipam.allocate(att(id));
    await ipam.allocate(att("other", "node-b"));
    assertEquals((await ipam.release(att("a"))).length, 1);
    assertEquals(await ipam.release(att("a")), []);
    const r = await ipam.gc("node-a", [{ containerID: "b", ifname: "eth0" }]);
    assertEquals(r.released.map((h) => h.containerID), ["c"]);
    assertEquals((await ipam.list()).map((x) => x.containerID).sort(), ["b", "other"]);
    assert((await ipam.check()).ok);
  });

  test("a removed node's blocks and addresses are released, even by three agents at once", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.addPool("fd00:244::/48");
    await ipam.registerNode("node-a", { ips: ["172.31.0.2"] });
    for (let i = 0; i < 5; i++) await ipam.allocate(att(`p${i}`));
    await ipam.allocate(att("keep", "node-b"));
    const results = await Promise.all(
      [0, 1, 2].map(() => new ClusterIpam(ipam.store).releaseNode("node-a")),
    );
    assertEquals(new Set(results.flatMap((r) => r.blocks)).size, 2);
    assertEquals(await ipam.nodeBlocks("node-a"), []);
    assertEquals((await ipam.list()).map((r) => r.node), ["node-b", "node-b"]);
    assertEquals((await ipam.nodes()).map((n) => n.name), []);
    assert((await ipam.check()).ok, JSON.stringify(await ipam.check()));
  });

  test("20 nodes claiming blocks at once: no block has two owners", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.addPool("fd00:244::/48");
    const nodes = Array.from({ length: 20 }, (_, i) => `node-${i}`);
    await Promise.all(nodes.map((n) => new ClusterIpam(ipam.store).claimBlocks(n)));
    const blocks = await ipam.blocks();
    assertEquals(blocks.length, 40);
    assertEquals(new Set(blocks.map((b) => b.cidr)).size, 40);
    for (const n of nodes) assertEquals(blocks.filter((b) => b.node === n).length, 2);
    assert((await ipam.check()).ok);
  });

  test("a pool with addresses cannot be removed; an empty one goes with its blocks", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.allocate(att("x"));
    await assertRejects(() => ipam.removePool("10.244.0.0/16"), IpamError, "1 allocated address");
    await ipam.release(att("x"));
    await ipam.removePool("10.244.0.0/16");
    assertEquals([await ipam.pools(), await ipam.blocks()], [[], []]);
    await assertRejects(() => ipam.allocate(att("y")), IpamExhaustedError, "no address pool");
  });

  test("the consistency check finds orphans, missing records and stray blocks", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    const [a] = await ipam.allocate(att("x"));
    assert((await ipam.check()).ok);
    const blockKey = a!.block.replace("/", "-");
    const ghost = a!.ip.replace(/\.\d+$/, ".200");
    await ipam.store.commit({
      mutations: [
        {
          put: `/ohno/v1/ips/${blockKey}/${ghost}`,
          value: JSON.stringify({
            containerID: "ghost",
            ifname: "eth0",
            ip: ghost,
            node: "node-a",
            createdAt: "",
          }),
        },
        { delete: `/ohno/v1/ips/${blockKey}/${a!.ip}` },
        {
          put: "/ohno/v1/blocks/10.50.0.0-24",
          value: JSON.stringify({
            cidr: "10.50.0.0/24",
            pool: "none",
            node: "node-z",
            claimedAt: "",
          }),
        },
      ],
    });
    const report = await ipam.check();
    assert(!report.ok);
    assertEquals(report.problems.map((p) => p.kind).sort(), [
      "block-outside-pool",
      "missing-address",
      "orphan-address",
    ]);
  });

  test("an address whose record was lost and given to another attachment is reported", async (ipam) => {
    // x holds an address; its record is lost (by a bad release, a hand edit); y is then
    // given the same address. Both handles now claim it: check must say so.
    await ipam.addPool("10.244.0.0/16");
    const [a] = await ipam.allocate(att("x"));
    const key = `/ohno/v1/ips/${a!.block.replace("/", "-")}/${a!.ip}`;
    await ipam.store.commit({ mutations: [{ delete: key }] });
    const [b] = await ipam.allocate({ ...att("y"), requestedIPs: [a!.ip] });
    assertEquals(b!.ip, a!.ip, "the lost address is free to the allocator");
    const report = await ipam.check();
    assertEquals(report.problems.map((p) => [p.kind, p.key]), [
      ["missing-address", "/ohno/v1/handles/x/eth0"],
    ]);
    assert(report.problems[0]!.message.includes("held twice"), report.problems[0]!.message);
    // A handle that lists an address without its key is reported too.
    const hx = (await ipam.get(att("x")))!;
    await ipam.store.commit({
      mutations: [{
        put: "/ohno/v1/handles/x/eth0",
        value: JSON.stringify({ ...hx, keys: [] }),
      }],
    });
    assertEquals((await ipam.check()).problems.map((p) => p.message), [
      `x/eth0 holds ${a!.ip}, which has no address key in its handle`,
    ]);
  });

  test("node scope: an agent sees, releases and GCs only its own node's attachments", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    const [theirs] = await ipam.allocate(att("pod-b", "node-b"));
    assertEquals(await ipam.get(att("pod-b"), { node: "node-a" }), undefined);
    assertEquals(await ipam.release(att("pod-b"), { node: "node-a" }), []);
    assertEquals((await ipam.gc("node-a", [])).released, []);
    assertEquals((await ipam.list()).map((r) => r.ip), [theirs!.ip], "still held");
    await assertRejects(
      () => ipam.allocate({ ...att("again", "node-b"), requestedIPs: [theirs!.ip] }),
      AddressUnavailableError,
      "in use",
    );
    assertEquals((await ipam.get(att("pod-b"), { node: "node-b" }))?.ips, [theirs!.ip]);
    assertEquals(await ipam.release(att("pod-b"), { node: "node-b" }), [theirs!.ip]);
    assert((await ipam.check()).ok);
  });

  test("peers: nodes with their addresses and blocks; watchPeers sees a join", async (ipam) => {
    await ipam.addPool("10.244.0.0/16");
    await ipam.registerNode("node-a", { ips: ["172.31.0.2"] });
    const [blk] = await ipam.claimBlocks("node-a");
    assertEquals(await ipam.peers(), [{
      node: "node-a",
      ips: ["172.31.0.2"],
      blocks: [blk!.cidr],
    }]);
    // The watch: the whole set first, then per-node changes (a join, then a release).
    const ac = new AbortController();
    const view = new Map<string, Peer>();
    const batches: string[][] = [];
    let started!: () => void;
    const first = new Promise<void>((r) => (started = r));
    const watching = (async () => {
      for await (const changes of ipam.watchPeers({ signal: ac.signal, pollMs: 100 })) {
        batches.push(changes.map((c) => c.type));
        applyPeerChanges(view, changes);
        started();
        if (!view.has("node-a") && view.get("node-b")?.blocks.length === 1) break;
      }
    })();
    const timer = setTimeout(() => ac.abort(), 10_000);
    await first;
    assertEquals([...view.keys()], ["node-a"]);
    await ipam.registerNode("node-b", { ips: ["172.31.0.3"] });
    const [blkB] = await ipam.claimBlocks("node-b");
    await ipam.releaseNode("node-a");
    await watching;
    clearTimeout(timer);
    ac.abort();
    assertEquals([...view.values()], [{
      node: "node-b",
      ips: ["172.31.0.3"],
      blocks: [blkB!.cidr],
    }]);
    assertEquals(batches[0], ["reset"]);
  });
  contractSuite(
    `cluster IPAM (${name})`,
    async () => {
      const store = await make();
      const ipam = new ClusterIpam(store);
      return { ipam, close: () => store.close() };
    },
    cases.map((c) => ({ title: c.title, fn: (s: { ipam: ClusterIpam }) => c.fn(s.ipam) })),
    opts,
  );
}
