/**
 * What cluster IPAM stores and returns (values of the keys in keys.ts; ipam/SCHEMA.md),
 * and the checks shared by its parts.
 * @module
 */

import type { Family } from "../addr.ts";
import type { Attachment, HandleRecord } from "../records.ts";
import type { KV } from "../store.ts";

export const DEFAULT_BLOCK_PREFIX: Record<Family, number> = { 4: 24, 6: 64 };

export interface Pool {
  cidr: string;
  family: Family;
  blockPrefix: number;
  createdAt: string;
}

export interface Block {
  cidr: string;
  pool: string;
  node: string;
  claimedAt: string;
}

export interface NodeRecord {
  name: string;
  /** The node's addresses on the underlay (one per family), the next hops of host-gw. */
  ips: string[];
  /** Backend data (e.g. a VTEP MAC), free-form. */
  backend?: Record<string, unknown>;
  updatedAt: string;
}

/** The cluster's handle record: the address keys, so release needs no block lookup. */
export interface ClusterHandle extends HandleRecord {
  node: string;
  keys: string[];
}

export interface ClusterAllocation {
  family: Family;
  /** Address with the block's prefix length, e.g. `10.244.3.7/24`. */
  address: string;
  ip: string;
  /** The block's gateway (its first usable address, on the node's bridge). */
  gateway: string;
  block: string;
}

export interface ClusterRequest extends Attachment {
  node: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  requestedIPs?: string[];
}

export interface BlockUsage extends Block {
  used: number;
  /** Addresses pods can get (text: an IPv6 block's count exceeds JSON numbers). */
  capacity: string;
}

/** A block with the key-value it was read from (for compares). */
export interface BlockKv {
  kv: KV;
  value: Block;
}

/** Which node's attachments an operation may see and change (the node agent's own). */
export interface NodeScope {
  node?: string;
}

export function inScope(h: ClusterHandle, scope: NodeScope): boolean {
  return scope.node === undefined || h.node === scope.node;
}

const NODE_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function checkNodeName(node: string): void {
  if (!NODE_RE.test(node)) {
    throw new TypeError(`node name ${JSON.stringify(node)} is not valid (lowercase DNS name)`);
  }
}

export const parse = <T>(kv: KV) => JSON.parse(kv.value) as T;
