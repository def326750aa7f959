import { assert, assertEquals } from "../../tests/support/assert.ts";
import { MemoryStore } from "../memory.ts";
import {
  applyPeerChanges,
  type Peer,
  type PeerChange,
  PeerView,
  type PeerWatchStats,
  watchPeerEvents,
} from "./peers.ts";
import type { KV, Mutation, WatchEvent } from "../store.ts";

let rev = 0;
const kv = (key: string, value: unknown): KV => ({
  key,
  value: typeof value === "string" ? value : JSON.stringify(value),
  createRevision: ++rev,
  modRevision: rev,
});
const nodeKv = (n: string, ips: string[]) => kv(`/ohno/v1/nodes/${n}`, { name: n, ips });
const blockKey = (cidr: string) => `/ohno/v1/blocks/${cidr.replace("/", "-")}`;
const blockKv = (cidr: string, node: string) => kv(blockKey(cidr), { cidr, node, pool: "x" });
const put = (k: KV): WatchEvent => ({ type: "put", kv: k });
const del = (key: string): WatchEvent => ({ type: "delete", key, modRevision: ++rev });

Deno.test("peer view: events change the view and name the nodes they touch", () => {
  const v = new PeerView();
  v.reset([nodeKv("a", ["10.0.0.1"])], [blockKv("10.1.0.0/24", "a")]);
  assertEquals(v.peers(), [{ node: "a", ips: ["10.0.0.1"], blocks: ["10.1.0.0/24"] }]);
  const cases: { what: string; e: WatchEvent; touched: string[]; peers: string[] }[] = [
    {
      what: "a block for a node without a record yet",
      e: put(blockKv("10.1.1.0/24", "b")),
      touched: ["b"],
      peers: ["a 10.0.0.1 10.1.0.0/24", "b  10.1.1.0/24"],
    },
    {
      what: "its record arrives",
      e: put(nodeKv("b", ["10.0.0.2"])),
      touched: ["b"],
      peers: ["a 10.0.0.1 10.1.0.0/24", "b 10.0.0.2 10.1.1.0/24"],
    },
    {
      what: "a block changes owner: both nodes touched",
      e: put(blockKv("10.1.0.0/24", "b")),
      touched: ["a", "b"],
      peers: ["a 10.0.0.1 ", "b 10.0.0.2 10.1.0.0/24,10.1.1.0/24"],
    },
    {
      what: "a node record deleted, its blocks remain",
      e: del("/ohno/v1/nodes/b"),
      touched: ["b"],
      peers: ["a 10.0.0.1 ", "b  10.1.0.0/24,10.1.1.0/24"],
    },
    {
      what: "a block deleted",
      e: del(blockKey("10.1.0.0/24")),
      touched: ["b"],
      peers: ["a 10.0.0.1 ", "b  10.1.1.0/24"],
    },
    {
      what: "the last block of a node without a record: the node is gone",
      e: del(blockKey("10.1.1.0/24")),
      touched: ["b"],
      peers: ["a 10.0.0.1 "],
    },
    {
      what: "a key outside nodes and blocks touches nothing",
      e: put(kv("/ohno/v1/ips/10.1.0.0-24/10.1.0.5", {})),
      touched: [],
      peers: ["a 10.0.0.1 "],
    },
    {
      what: "a malformed block record is ignored",
      e: put(kv(blockKey("10.1.9.0/24"), "{not json")),
      touched: [],
      peers: ["a 10.0.0.1 "],
    },
    {
      what: "deleting what is not there touches nothing",
      e: del("/ohno/v1/nodes/zzz"),
      touched: [],
      peers: ["a 10.0.0.1 "],
    },
  ];
  for (const c of cases) {
    assertEquals(v.touched(c.e), c.touched, c.what);
    assertEquals(
      v.peers().map((p) => `${p.node} ${p.ips.join(",")} ${p.blocks.join(",")}`),
      c.peers,
      c.what,
    );
  }
  assertEquals(v.peer("b"), undefined);
});

/** Collects `watchPeerEvents` batches until `until` holds of the view. */
async function watchUntil(
  store: MemoryStore,
  until: (view: Map<string, Peer>) => boolean,
  stats: PeerWatchStats,
  whileWatching: (batches: PeerChange[][]) => Promise<void>,
): Promise<PeerChange[][]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  const batches: PeerChange[][] = [];
  const view = new Map<string, Peer>();
  let started!: () => void;
  const first = new Promise<void>((r) => (started = r));
  const done = (async () => {
    for await (const b of watchPeerEvents(store, { signal: ac.signal, stats })) {
      batches.push(b);
      applyPeerChanges(view, b);
      started();
      if (batches.length > 1 && until(view)) break;
    }
  })();
  await first;
  await whileWatching(batches);
  await done;
  clearTimeout(timer);
  assert(!ac.signal.aborted, "the watch did not see the changes within 10 s");
  return batches;
}

Deno.test("peer watch: 200 nodes joining in one burst are one list and one batch", async () => {
  const store = new MemoryStore();
  await store.commit({ mutations: [{ put: "/ohno/v1/nodes/me", value: '{"ips":[]}' }] });
  const stats = { lists: 0, events: 0, batches: 0 };
  const batches = await watchUntil(store, (v) => v.size === 201, stats, async () => {
    // As 200 agents would: each writes its record and its block (separate commits).
    const commits: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const cidr = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
      const muts: Mutation[][] = [
        [{ put: `/ohno/v1/nodes/n${i}`, value: JSON.stringify({ ips: [`172.31.1.${i}`] }) }],
        [{ put: blockKey(cidr), value: JSON.stringify({ cidr, node: `n${i}` }) }],
      ];
      for (const m of muts) commits.push(store.commit({ mutations: m }));
    }
    await Promise.all(commits);
  });
  assertEquals(stats.lists, 1);
  assertEquals(stats.events, 400);
  assertEquals(batches.length, 2, "the reset, then the whole burst as one batch");
  assertEquals(batches[1]!.length, 200);
  assertEquals(batches[1]!.find((c) => c.type === "put" && c.peer.node === "n7"), {
    type: "put",
    peer: { node: "n7", ips: ["172.31.1.7"], blocks: ["10.100.7.0/24"] },
  });
});

Deno.test("peer watch: a node released is one delete; a block moving touches both", async () => {
  const store = new MemoryStore();
  const cidr = "10.9.0.0/24";
  await store.commit({
    mutations: [
      { put: "/ohno/v1/nodes/a", value: '{"ips":["1.1.1.1"]}' },
      { put: "/ohno/v1/nodes/b", value: '{"ips":["1.1.1.2"]}' },
      { put: blockKey(cidr), value: JSON.stringify({ cidr, node: "a" }) },
    ],
  });
  const stats = { lists: 0, events: 0, batches: 0 };
  const batches = await watchUntil(store, (v) => !v.has("a"), stats, async (seen) => {
    await store.commit({
      mutations: [{ put: blockKey(cidr), value: JSON.stringify({ cidr, node: "b" }) }],
    });
    // The move goes out as its own batch before the release is written.
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 5));
    await store.commit({ mutations: [{ delete: "/ohno/v1/nodes/a" }] });
  });
  assertEquals(stats.lists, 1);
  assertEquals(batches.slice(1), [
    [
      { type: "put", peer: { node: "a", ips: ["1.1.1.1"], blocks: [] } },
      { type: "put", peer: { node: "b", ips: ["1.1.1.2"], blocks: [cidr] } },
    ],
    [{ type: "delete", node: "a" }],
  ]);
});
