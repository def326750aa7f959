/**
 * Reading and releasing attachments (handles): get, release, GC of a node, and the list
 * of every allocated address for `ohno ipam ls`.
 * @module
 */

import { containsIp, formatCidr, parseCidr, parseIp } from "../addr.ts";
import { releaseAllBut, releaseTxn } from "../attachments.ts";
import {
  type AddressRecord,
  type AllocationRow,
  allocationRow,
  type Attachment,
  checkAttachment,
} from "../records.ts";
import { atomically, type Store } from "../store.ts";
import { readPools } from "./blocks.ts";
import { blockTextOfIpKey, K, PREFIX } from "./keys.ts";
import { type ClusterHandle, inScope, type NodeScope, parse } from "./types.ts";

/**
 * An attachment's handle. With `scope.node` (the node agent), only that node's: an
 * attachment of another node is not found.
 */
export async function getHandle(
  store: Store,
  a: Attachment,
  scope: NodeScope = {},
): Promise<ClusterHandle | undefined> {
  checkAttachment(a);
  const kv = await store.get(K.handle(a));
  const h = kv ? parse<ClusterHandle>(kv) : undefined;
  return h && inScope(h, scope) ? h : undefined;
}

/**
 * Releases an attachment's addresses (idempotent); returns them. With `scope.node` (the
 * node agent), only that node's: another node's attachment is left alone and nothing is
 * returned. Without it (the admin CLI), any node's.
 */
export function release(store: Store, a: Attachment, scope: NodeScope = {}): Promise<string[]> {
  checkAttachment(a);
  return atomically(store, async (r) => {
    const kv = await r.get(K.handle(a));
    if (!kv) return { result: [] as string[] };
    const h = parse<ClusterHandle>(kv);
    if (!inScope(h, scope)) return { result: [] as string[] };
    const txn = await releaseTxn(r, kv, a, h.keys ?? [], (x) => parse<AddressRecord>(x));
    return { txn, result: h.ips };
  }, { what: "release" });
}

export async function readHandles(store: Store): Promise<ClusterHandle[]> {
  return (await store.list(PREFIX.handles)).map((kv) => parse<ClusterHandle>(kv));
}

/** Releases every attachment of `node` that is not in `valid`. */
export async function gc(
  store: Store,
  node: string,
  valid: Attachment[],
): Promise<{ released: ClusterHandle[]; errors: string[] }> {
  const mine = (await readHandles(store)).filter((h) => h.node === node);
  return releaseAllBut(mine, valid, async (h) => (await release(store, h, { node })).length > 0);
}

/** Every allocated address with its owner, optionally of one node or pool. */
export async function listAllocations(
  store: Store,
  filter: { node?: string | undefined; pool?: string | undefined } = {},
): Promise<AllocationRow[]> {
  const [poolList, ips] = await Promise.all([readPools(store), store.list(PREFIX.ips)]);
  const pools = poolList.map((p) => ({ p, c: parseCidr(p.cidr) }));
  const poolFilter = filter.pool ? formatCidr(parseCidr(filter.pool)) : undefined;
  const rows: AllocationRow[] = [];
  for (const kv of ips) {
    const rec = parse<AddressRecord>(kv);
    const ip = parseIp(rec.ip);
    const pool = pools.find((x) => containsIp(x.c, ip))?.p.cidr ?? "-";
    if (filter.node && rec.node !== filter.node) continue;
    if (poolFilter && pool !== poolFilter) continue;
    rows.push(allocationRow(rec, { node: rec.node ?? "-", pool, block: blockTextOfIpKey(kv.key) }));
  }
  return rows;
}
