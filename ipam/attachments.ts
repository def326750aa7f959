/**
 * An attachment's records in one transaction, the shape both allocators share (the
 * embedded one, ranges.ts, and cluster IPAM): allocation writes an address record per
 * address and the handle listing them, each created only if absent; release deletes the
 * handle (if unchanged) and those of its address records that are still its own; GC
 * releases every attachment not listed as valid. The allocators differ only in their keys
 * and in the extra fields they store (records.ts).
 * @module
 */

import { HandleExistsError } from "./errors.ts";
import {
  type AddressRecord,
  type Attachment,
  handleId,
  type HandleRecord,
  sameAttachment,
} from "./records.ts";
import type { Compare, KV, Mutation, StoreReader, Txn } from "./store.ts";

/** The pod fields stored with each record, only those the allocator keeps and knows. */
export interface PodFields {
  podNamespace?: string;
  podName?: string;
  podUid?: string;
}

/** Refuses an allocation for an attachment that already has a handle. */
export function refuseHeld(
  handleKv: KV | undefined,
  a: Attachment,
  decode: (kv: KV) => HandleRecord,
): void {
  if (handleKv) throw new HandleExistsError(a.containerID, a.ifname, decode(handleKv).ips);
}

/**
 * The writes of one allocation: `address()` for each address, then `txn()` with the
 * handle. Every key is compared absent, so two allocations never share an address.
 */
export class AttachmentWrites {
  readonly compare: Compare[];
  readonly mutations: Mutation[] = [];
  readonly ips: string[] = [];
  readonly createdAt = new Date().toISOString();

  constructor(
    readonly handleKey: string,
    readonly owner: Attachment,
    readonly pod: PodFields,
    /** The allocating node, stored in each address record (cluster IPAM). */
    readonly node?: string,
  ) {
    this.compare = [{ key: handleKey, absent: true }];
  }

  /** The record of `ip` under `key`; `absentToo` are more keys that must not exist. */
  address(key: string, ip: string, absentToo: string[] = []): void {
    this.compare.push({ key, absent: true });
    for (const k of absentToo) this.compare.push({ key: k, absent: true });
    const rec: AddressRecord = {
      containerID: this.owner.containerID,
      ifname: this.owner.ifname,
      ip,
      ...(this.node !== undefined ? { node: this.node } : {}),
      createdAt: this.createdAt,
      ...this.pod,
    };
    this.mutations.push({ put: key, value: JSON.stringify(rec) });
    this.ips.push(ip);
  }

  /** The transaction: the addresses' writes, then the handle with `extra` fields. */
  txn(extra: Record<string, unknown> = {}): Txn {
    const handle = {
      containerID: this.owner.containerID,
      ifname: this.owner.ifname,
      ips: this.ips,
      ...extra,
      createdAt: this.createdAt,
      ...this.pod,
    };
    return {
      compare: this.compare,
      mutations: [...this.mutations, { put: this.handleKey, value: JSON.stringify(handle) }],
    };
  }
}

/**
 * The release of the attachment `a` whose handle is `handleKv`: the handle, if unchanged,
 * and each of `addressKeys` whose record still names `a` (decoded with `decode`).
 */
export async function releaseTxn(
  r: StoreReader,
  handleKv: KV,
  a: Attachment,
  addressKeys: readonly string[],
  decode: (kv: KV) => Attachment,
): Promise<Txn> {
  const mutations: Mutation[] = [{ delete: handleKv.key }];
  for (const key of addressKeys) {
    const kv = await r.get(key);
    if (kv && sameAttachment(decode(kv), a)) mutations.push({ delete: key });
  }
  return { compare: [{ key: handleKv.key, modRevision: handleKv.modRevision }], mutations };
}

/**
 * Releases every handle not in `valid`, going on past errors and reporting them all.
 * `release` answers whether the handle counts as released.
 */
export async function releaseAllBut<H extends Attachment>(
  handles: readonly H[],
  valid: readonly Attachment[],
  release: (h: H) => Promise<boolean>,
): Promise<{ released: H[]; errors: string[] }> {
  const keep = new Set(valid.map(handleId));
  const released: H[] = [];
  const errors: string[] = [];
  for (const h of handles) {
    if (keep.has(handleId(h))) continue;
    try {
      if (await release(h)) released.push(h);
    } catch (e) {
      errors.push(`${handleId(h)}: ${(e as Error).message}`);
    }
  }
  return { released, errors };
}
