/**
 * The cluster's nodes and blocks as the routing backends see them, kept in memory and
 * changed by the datastore's watch (as flannel's and Calico's agents keep theirs).
 *
 * {@link PeerView} is the pure part: one list fills it, each watch event changes it and
 * says which nodes it touched. {@link watchPeerEvents} drives it: it lists once at a
 * revision, then drains the watch in bursts and yields, per burst, one batch of
 * `put`/`delete` events for the nodes that changed. It lists again only when the watch
 * says it must (compaction, a broken stream), and then once.
 *
 * Design history: the first agent re-listed every node and block after each watch event
 * (a 20 ms pause, then a full snapshot). N nodes joining at once cost N lists of N keys
 * on every agent, O(N²) per agent and O(N³) key reads across the cluster; 1,000 joins
 * kept each agent busy for minutes. Here a burst costs one pass over its events.
 * @module
 */

import type { KV, Store, WatchEvent } from "../store.ts";
import { sleep } from "../../lib/async.ts";
import { PREFIX, ROOT } from "./keys.ts";
import type { Block, NodeRecord } from "./types.ts";

/** A node as the routing backends see it. */
export interface Peer {
  node: string;
  ips: string[];
  blocks: string[];
  backend?: Record<string, unknown>;
}

/** A change of the peer set: a node appeared or changed, a node is gone, or the whole set. */
export type PeerChange =
  | { type: "put"; peer: Peer }
  | { type: "delete"; node: string }
  | { type: "reset"; peers: Peer[] };

/** Applies a batch of changes to a map of peers by name (for consumers that keep one). */
export function applyPeerChanges(view: Map<string, Peer>, changes: readonly PeerChange[]): void {
  for (const c of changes) {
    if (c.type === "reset") {
      view.clear();
      for (const p of c.peers) view.set(p.node, p);
    } else if (c.type === "put") view.set(c.peer.node, c.peer);
    else view.delete(c.node);
  }
}

const NODES_PREFIX = PREFIX.nodes;
const BLOCKS_PREFIX = PREFIX.blocks;

function parse<T>(kv: KV): T | undefined {
  try {
    return JSON.parse(kv.value) as T;
  } catch {
    return undefined; // a malformed record is `ohno ipam check`'s to report, not routing's
  }
}

/** Nodes and blocks in memory: filled by one list, changed by watch events. */
export class PeerView {
  /** Node records by name. */
  #nodes = new Map<string, { ips: string[]; backend?: Record<string, unknown> }>();
  /** Blocks by key: the CIDR and its owner (a delete event carries only the key). */
  #blocks = new Map<string, { cidr: string; node: string }>();
  /** Block CIDRs by owner. */
  #byNode = new Map<string, Set<string>>();

  /** Replaces the whole view with a listing of the nodes and blocks prefixes. */
  reset(nodes: KV[], blocks: KV[]): void {
    this.#nodes.clear();
    this.#blocks.clear();
    this.#byNode.clear();
    for (const kv of nodes) this.apply({ type: "put", kv });
    for (const kv of blocks) this.apply({ type: "put", kv });
  }

  /** Applies one watch event; returns the node it touched, if any. */
  apply(e: WatchEvent): string | undefined {
    if (e.type === "reset") return undefined;
    const key = e.type === "put" ? e.kv.key : e.key;
    if (key.startsWith(NODES_PREFIX)) {
      const name = key.slice(NODES_PREFIX.length);
      if (e.type === "delete") {
        return this.#nodes.delete(name) ? name : undefined;
      }
      const rec = parse<NodeRecord>(e.kv);
      this.#nodes.set(name, {
        ips: Array.isArray(rec?.ips) ? rec.ips.map(String) : [],
        ...(rec?.backend ? { backend: rec.backend } : {}),
      });
      return name;
    }
    if (key.startsWith(BLOCKS_PREFIX)) {
      const old = this.#blocks.get(key);
      if (old) {
        this.#blocks.delete(key);
        this.#byNode.get(old.node)?.delete(old.cidr);
        if (this.#byNode.get(old.node)?.size === 0) this.#byNode.delete(old.node);
      }
      if (e.type === "delete") return old?.node;
      const b = parse<Block>(e.kv);
      if (!b || typeof b.node !== "string" || typeof b.cidr !== "string") return old?.node;
      this.#blocks.set(key, { cidr: b.cidr, node: b.node });
      let set = this.#byNode.get(b.node);
      if (!set) this.#byNode.set(b.node, set = new Set());
      set.add(b.cidr);
      // A block that moved to another node touches both; the old owner is reported by
      // the caller through `touched` below.
      return b.node;
    }
    return undefined;
  }

  /**
   * Applies one event and returns every node it touched (a block that changed owner
   * touches the old and the new owner).
   */
  touched(e: WatchEvent): string[] {
    const key = e.type === "put" ? e.kv.key : e.type === "delete" ? e.key : "";
    const before = key.startsWith(BLOCKS_PREFIX) ? this.#blocks.get(key)?.node : undefined;
    const after = this.apply(e);
    return [...new Set([before, after].filter((n): n is string => n !== undefined))];
  }

  /** A node as routing sees it, or undefined when it has neither a record nor a block. */
  peer(name: string): Peer | undefined {
    const n = this.#nodes.get(name);
    const blocks = this.#byNode.get(name);
    if (!n && !blocks) return undefined;
    return {
      node: name,
      ips: [...(n?.ips ?? [])],
      blocks: [...(blocks ?? [])].sort(),
      ...(n?.backend ? { backend: n.backend } : {}),
    };
  }

  /** Every node, by name. */
  peers(): Peer[] {
    const names = new Set([...this.#nodes.keys(), ...this.#byNode.keys()]);
    return [...names].sort().map((n) => this.peer(n)!);
  }

  get size(): number {
    return new Set([...this.#nodes.keys(), ...this.#byNode.keys()]).size;
  }
}

/** What {@link watchPeerEvents} did, for the agent's metrics. */
export interface PeerWatchStats {
  /** Full lists of nodes and blocks (the first, and one per watch reset). */
  lists: number;
  /** Watch events applied to the view. */
  events: number;
  /** Batches yielded after the first. */
  batches: number;
}

export interface WatchPeerOptions {
  signal: AbortSignal;
  /** How often to list again when the store cannot watch (the local store), in ms. */
  pollMs?: number;
  /** Counters, updated as the watch goes (the caller reads them for metrics). */
  stats?: PeerWatchStats;
}

/** Lists the nodes and blocks at (or after) the returned revision. */
async function listAll(store: Store): Promise<{ rev: number; nodes: KV[]; blocks: KV[] }> {
  // The revision first: events after it are replayed onto the listing, which is harmless
  // (the view applies puts and deletes idempotently) and loses nothing.
  const rev = await store.revision();
  const [nodes, blocks] = await Promise.all([
    store.list(NODES_PREFIX),
    store.list(BLOCKS_PREFIX),
  ]);
  return { rev, nodes, blocks };
}

/** The nodes with their addresses and blocks, for the routing backends: one list. */
export async function listPeers(store: Store): Promise<Peer[]> {
  const [nodes, blocks] = await Promise.all([
    store.list(NODES_PREFIX),
    store.list(BLOCKS_PREFIX),
  ]);
  const view = new PeerView();
  view.reset(nodes, blocks);
  return view.peers();
}

/**
 * The peer set as changes: first `[{type: "reset", peers}]`, then one batch per burst of
 * watch events with a `put` (or `delete`) for each node the burst touched. A burst is
 * everything the watch has delivered by the time the previous event was applied, so
 * 1,000 joins written at once come out as a handful of batches, not 1,000 snapshots.
 * Watches when the store can; lists every `pollMs` otherwise. Ends when the signal
 * aborts; throws when the store fails (the caller retries).
 */
export async function* watchPeerEvents(
  store: Store,
  opts: WatchPeerOptions,
): AsyncIterable<PeerChange[]> {
  const { signal } = opts;
  const stats = opts.stats ?? { lists: 0, events: 0, batches: 0 };
  const view = new PeerView();
  while (!signal.aborted) {
    const { rev, nodes, blocks } = await listAll(store);
    stats.lists++;
    view.reset(nodes, blocks);
    yield [{ type: "reset", peers: view.peers() }];
    if (!store.watch) {
      await sleep(opts.pollMs ?? 2000, signal);
      continue;
    }
    yield* watchBursts(store, rev, view, stats, signal);
  }
}

/**
 * The watch from `rev`, one batch of changes per burst, until the watch must be listed
 * again (compaction, a broken stream) or the signal aborts.
 */
async function* watchBursts(
  store: Store,
  rev: number,
  view: PeerView,
  stats: PeerWatchStats,
  signal: AbortSignal,
): AsyncIterable<PeerChange[]> {
  // The watch gets a signal of its own: when the consumer stops early, a `next()` of
  // the watch is still pending, and only an abort lets the watch end so that the
  // iterator's `return()` can complete (and etcd's watcher be cancelled).
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  const it = store.watch!(ROOT, { afterRevision: rev, signal: stop.signal })[
    Symbol.asyncIterator
  ]();
  try {
    const burst: Burst = { it, next: undefined, reset: false, touched: new Set() };
    while (!signal.aborted && !burst.reset) {
      burst.next ??= it.next();
      const first = await burst.next;
      burst.next = undefined;
      if (first.done) break;
      burst.touched = new Set();
      await drainBurst(burst, first.value, view, stats);
      const { reset, touched } = burst;
      if (reset || touched.size === 0) continue;
      stats.batches++;
      yield [...touched].sort().map((name): PeerChange => {
        const p = view.peer(name);
        return p ? { type: "put", peer: p } : { type: "delete", node: name };
      });
    }
  } finally {
    stop.abort();
    signal.removeEventListener("abort", onAbort);
    await it.return?.();
  }
}

/** A watch being drained: the pending `next()` carries over to the next burst. */
interface Burst {
  it: AsyncIterator<WatchEvent>;
  next: Promise<IteratorResult<WatchEvent>> | undefined;
  /** The watch must be listed again. */
  reset: boolean;
  /** The nodes this burst touched. */
  touched: Set<string>;
}

/** Applies `e` and every event already delivered; stops at the first wait. */
async function drainBurst(
  b: Burst,
  first: WatchEvent,
  view: PeerView,
  stats: PeerWatchStats,
): Promise<void> {
  let e: WatchEvent | undefined = first;
  while (e) {
    if (e.type === "reset") {
      b.reset = true;
      return;
    }
    stats.events++;
    for (const n of view.touched(e)) b.touched.add(n);
    b.next = b.it.next();
    const r = await Promise.race([b.next, idle()]);
    if (r === IDLE) return;
    b.next = undefined;
    if (r.done) {
      b.reset = true;
      return;
    }
    e = r.value;
  }
}
const IDLE = Symbol("idle");
/** Resolves after the events already queued have been delivered (one macrotask). */
function idle(): Promise<typeof IDLE> {
  return new Promise((r) => setTimeout(() => r(IDLE), 0));
}
