/**
 * {@link ClusterIpam}: cluster IPAM's one object, what the node agent, the admin CLI and
 * the tests hold. Each method is one of the functions of this folder over the store;
 * the object adds only each node's allocator (group.ts: a cache and grouped commits).
 * @module
 */

import type { AllocationRow, Attachment } from "../records.ts";
import type { Store, StoreReader } from "../store.ts";
import { parseRequested } from "./allocate.ts";
import { addPool, blockUsage, claimBlocks, nodeBlocks, readPools, removePool } from "./blocks.ts";
import { type CheckReport, checkSnapshot, readSnapshot } from "./check.ts";
import { type GroupEvent, NodeAllocator } from "./group.ts";
import { gc, getHandle, listAllocations, readHandles, release } from "./handles.ts";
import { createNode, readNode, readNodes, registerNode, releaseNode } from "./nodes.ts";
import {
  listPeers,
  type Peer,
  type PeerChange,
  watchPeerEvents,
  type WatchPeerOptions,
} from "./peers.ts";
import { readReservations, type Reservation, reserve, unreserve } from "./reservations.ts";
import type {
  Block,
  BlockUsage,
  ClusterAllocation,
  ClusterHandle,
  ClusterRequest,
  NodeRecord,
  NodeScope,
  Pool,
} from "./types.ts";

export class ClusterIpam {
  /** Each node's allocations through this instance, grouped into shared commits (group.ts). */
  readonly #allocators = new Map<string, NodeAllocator>();

  /** `onGroup`: each group committed or conflict of an allocator (the agent's metrics). */
  constructor(
    readonly store: Store,
    readonly opts: { onGroup?: (e: GroupEvent) => void } = {},
  ) {}

  /** The allocator of `node`'s allocations made through this instance. */
  allocator(node: string): NodeAllocator {
    let a = this.#allocators.get(node);
    if (!a) {
      this.#allocators.set(node, a = new NodeAllocator(this.store, node, this.opts.onGroup));
    }
    return a;
  }

  /** Addresses this instance released: free again in every allocator's cache. */
  #released(ips: readonly string[]): void {
    for (const a of this.#allocators.values()) a.forget(ips);
  }

  // ---------------------------------------------------------------- pools and blocks (blocks.ts)

  pools(r: StoreReader = this.store): Promise<Pool[]> {
    return readPools(r);
  }
  addPool(cidrText: string, blockPrefix?: number): Promise<Pool> {
    return addPool(this.store, cidrText, blockPrefix);
  }
  removePool(cidrText: string): Promise<void> {
    return removePool(this.store, cidrText);
  }
  nodeBlocks(node: string, r: StoreReader = this.store): Promise<Block[]> {
    return nodeBlocks(r, node);
  }
  claimBlocks(node: string): Promise<Block[]> {
    return claimBlocks(this.store, node);
  }
  /** Every block with its owner and utilisation. */
  blocks(): Promise<BlockUsage[]> {
    return blockUsage(this.store);
  }

  // ---------------------------------------------------------------- nodes (nodes.ts)

  registerNode(
    name: string,
    info: { ips: string[]; backend?: Record<string, unknown> },
  ): Promise<void> {
    return registerNode(this.store, name, info);
  }
  createNode(name: string): Promise<boolean> {
    return createNode(this.store, name);
  }
  node(name: string): Promise<NodeRecord | undefined> {
    return readNode(this.store, name);
  }
  nodes(): Promise<NodeRecord[]> {
    return readNodes(this.store);
  }
  releaseNode(node: string): Promise<{ blocks: string[]; addresses: number }> {
    this.#allocators.get(node)?.invalidate();
    return releaseNode(this.store, node);
  }

  // ---------------------------------------------------------------- addresses (allocate.ts, handles.ts)

  /** One address per family the pools cover, inside the node's blocks (claiming more when full). */
  allocate(req: ClusterRequest): Promise<ClusterAllocation[]> {
    const requested = parseRequested(req);
    return this.allocator(req.node).allocate(req, requested);
  }
  get(a: Attachment, scope: NodeScope = {}): Promise<ClusterHandle | undefined> {
    return getHandle(this.store, a, scope);
  }
  async release(a: Attachment, scope: NodeScope = {}): Promise<string[]> {
    const ips = await release(this.store, a, scope);
    this.#released(ips);
    return ips;
  }
  async gc(
    node: string,
    valid: Attachment[],
  ): Promise<{ released: ClusterHandle[]; errors: string[] }> {
    const r = await gc(this.store, node, valid);
    this.#released(r.released.flatMap((h) => h.ips));
    return r;
  }
  handles(): Promise<ClusterHandle[]> {
    return readHandles(this.store);
  }
  list(
    filter: { node?: string | undefined; pool?: string | undefined } = {},
  ): Promise<AllocationRow[]> {
    return listAllocations(this.store, filter);
  }

  // ---------------------------------------------------------------- reservations (reservations.ts)

  reserve(ipText: string, note = ""): Promise<void> {
    return reserve(this.store, ipText, note);
  }
  unreserve(ipText: string): Promise<boolean> {
    return unreserve(this.store, ipText);
  }
  reservations(): Promise<Reservation[]> {
    return readReservations(this.store);
  }

  // ---------------------------------------------------------------- peers (peers.ts), check (check.ts)

  /** The nodes with their addresses and blocks, for the routing backends. */
  peers(): Promise<Peer[]> {
    return listPeers(this.store);
  }
  /** The peer set as changes (peers.ts): the whole set, then one batch per burst. */
  watchPeers(opts: WatchPeerOptions): AsyncIterable<PeerChange[]> {
    return watchPeerEvents(this.store, opts);
  }
  /** The consistency check: every rule of ipam/SCHEMA.md, all problems listed. */
  async check(): Promise<CheckReport> {
    return checkSnapshot(await readSnapshot(this.store));
  }
}
