/**
 * {@link ClusterIpam}: cluster IPAM's one object, what the node agent, the admin CLI and
 * the tests hold. Each method is one of the functions of this folder over the store;
 * the object adds only the per-node queue of allocations.
 * @module
 */

import type { AllocationRow, Attachment } from "../records.ts";
import type { Store, StoreReader } from "../store.ts";
import { allocate, parseRequested } from "./allocate.ts";
import { addPool, blockUsage, claimBlocks, nodeBlocks, readPools, removePool } from "./blocks.ts";
import { type CheckReport, checkSnapshot, readSnapshot } from "./check.ts";
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
  /** Allocations of one node made through this instance, one after another. */
  readonly #nodeQueues = new Map<string, Promise<unknown>>();

  constructor(readonly store: Store) {}

  /**
   * Runs `fn` after this instance's earlier allocations for `node`. All of a node's
   * allocations would otherwise race for the same cursor and the same next address and
   * mostly lose their compares; in one queue each is one read round and one commit.
   * (Other processes, e.g. the CLI, still race safely through the compares.)
   */
  #serial<T>(node: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#nodeQueues.get(node) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.#nodeQueues.set(node, tail);
    tail.then(() => {
      if (this.#nodeQueues.get(node) === tail) this.#nodeQueues.delete(node);
    });
    return run;
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
    return releaseNode(this.store, node);
  }

  // ---------------------------------------------------------------- addresses (allocate.ts, handles.ts)

  /** One address per family the pools cover, inside the node's blocks (claiming more when full). */
  allocate(req: ClusterRequest): Promise<ClusterAllocation[]> {
    const requested = parseRequested(req);
    return this.#serial(req.node, () => allocate(this.store, req, requested));
  }
  get(a: Attachment, scope: NodeScope = {}): Promise<ClusterHandle | undefined> {
    return getHandle(this.store, a, scope);
  }
  release(a: Attachment, scope: NodeScope = {}): Promise<string[]> {
    return release(this.store, a, scope);
  }
  gc(node: string, valid: Attachment[]): Promise<{ released: ClusterHandle[]; errors: string[] }> {
    return gc(this.store, node, valid);
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
