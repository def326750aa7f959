/**
 * The consistency check of cluster IPAM: every rule of ipam/SCHEMA.md, all problems
 * listed. {@link checkSnapshot} is pure, over a {@link Snapshot} that
 * {@link readSnapshot} reads from a store (or a test builds by hand).
 * @module
 */

import { containsCidr, containsIp, formatCidr, overlaps, parseCidr, parseIp } from "../addr.ts";
import { type AddressRecord, handleId, sameAttachment } from "../records.ts";
import type { Store } from "../store.ts";
import { readBlocks, readPools } from "./blocks.ts";
import { blockTextOfIpKey, K, lastSegment, PREFIX } from "./keys.ts";
import { type Block, type ClusterHandle, parse, type Pool } from "./types.ts";

export interface Problem {
  kind:
    | "orphan-address"
    | "missing-address"
    | "address-outside-block"
    | "address-in-foreign-block"
    | "block-outside-pool"
    | "block-overlap"
    | "reserved-allocated";
  key: string;
  message: string;
}

export interface CheckReport {
  ok: boolean;
  counts: { pools: number; blocks: number; nodes: number; handles: number; addresses: number };
  problems: Problem[];
}

/** Everything the check looks at, by key, decoded. */
export interface Snapshot {
  pools: Pool[];
  blocks: { key: string; block: Block }[];
  /** Address records under `ips/<block>/<ip>` keys. */
  addresses: { key: string; rec: AddressRecord }[];
  handles: { key: string; handle: ClusterHandle }[];
  /** The reserved addresses. */
  reserved: string[];
  /** How many node records there are. */
  nodes: number;
}

export async function readSnapshot(store: Store): Promise<Snapshot> {
  const [pools, blocks, ips, handles, res, nodes] = await Promise.all([
    readPools(store),
    readBlocks(store),
    store.list(PREFIX.ips),
    store.list(PREFIX.handles),
    store.list(PREFIX.reservations),
    store.list(PREFIX.nodes),
  ]);
  return {
    pools,
    blocks: blocks.map((b) => ({ key: b.kv.key, block: b.value })),
    addresses: ips.map((kv) => ({ key: kv.key, rec: parse<AddressRecord>(kv) })),
    handles: handles.map((kv) => ({ key: kv.key, handle: parse<ClusterHandle>(kv) })),
    reserved: res.map((kv) => lastSegment(kv.key)),
    nodes: nodes.length,
  };
}

export function checkSnapshot(s: Snapshot): CheckReport {
  const problems = [...blockProblems(s), ...addressProblems(s), ...handleProblems(s)];
  return {
    ok: problems.length === 0,
    counts: {
      pools: s.pools.length,
      blocks: s.blocks.length,
      nodes: s.nodes,
      handles: s.handles.length,
      addresses: s.addresses.length,
    },
    problems,
  };
}

/** Blocks outside every pool, and overlapping blocks. */
function blockProblems(s: Snapshot): Problem[] {
  const problems: Problem[] = [];
  const pools = s.pools.map((p) => parseCidr(p.cidr));
  const blocks = s.blocks.map((b) => ({ key: b.key, c: parseCidr(b.block.cidr) }));
  for (const b of blocks) {
    if (!pools.some((p) => containsCidr(p, b.c))) {
      problems.push({
        kind: "block-outside-pool",
        key: b.key,
        message: `block ${formatCidr(b.c)} lies in no pool`,
      });
    }
  }
  for (let i = 0; i < blocks.length; i++) {
    for (let j = i + 1; j < blocks.length; j++) {
      if (overlaps(blocks[i]!.c, blocks[j]!.c)) {
        problems.push({
          kind: "block-overlap",
          key: blocks[j]!.key,
          message: `blocks ${formatCidr(blocks[i]!.c)} and ${formatCidr(blocks[j]!.c)} overlap`,
        });
      }
    }
  }
  return problems;
}

/** Each address record: a live handle that lists it, in a claimed block of its node, not reserved. */
function addressProblems(s: Snapshot): Problem[] {
  const problems: Problem[] = [];
  const blocks = new Map(s.blocks.map((b) => [b.block.cidr, b.block]));
  const handles = new Map(s.handles.map((h) => [h.key, h.handle]));
  const reserved = new Set(s.reserved);
  for (const { key, rec } of s.addresses) {
    const add = (kind: Problem["kind"], message: string) => problems.push({ kind, key, message });
    const blockText = blockTextOfIpKey(key);
    const h = handles.get(K.handle(rec));
    if (!h || !h.ips.includes(rec.ip)) {
      add("orphan-address", `${rec.ip} has no live handle (${handleId(rec)})`);
    }
    const block = blocks.get(blockText);
    if (!block || !containsIp(parseCidr(blockText), parseIp(rec.ip))) {
      add("address-outside-block", `${rec.ip} is not in a claimed block ${blockText}`);
    } else if (rec.node && block.node !== rec.node) {
      add(
        "address-in-foreign-block",
        `${rec.ip} of node ${rec.node} is in block ${blockText} of node ${block.node}`,
      );
    }
    if (reserved.has(rec.ip)) add("reserved-allocated", `${rec.ip} is reserved but allocated`);
  }
  return problems;
}

/**
 * A live handle's every address needs its own record: a record that is gone, or now
 * names another attachment, means the address can be (or has been) given out twice.
 */
function handleProblems(s: Snapshot): Problem[] {
  const problems: Problem[] = [];
  const records = new Map(s.addresses.map((a) => [a.key, a.rec]));
  for (const { key, handle: h } of s.handles) {
    const missing = (message: string) =>
      problems.push({ kind: "missing-address", key, message: `${handleId(h)} holds ${message}` });
    const keys = h.keys ?? [];
    for (const ip of h.ips) {
      if (!keys.some((k) => lastSegment(k) === ip)) {
        missing(`${ip}, which has no address key in its handle`);
      }
    }
    for (const k of keys) {
      const rec = records.get(k);
      if (!rec) missing(`${lastSegment(k)}, which has no address record`);
      else if (!sameAttachment(rec, h)) {
        missing(
          `${lastSegment(k)}, whose record names ${
            handleId(rec)
          } instead: the address is held twice`,
        );
      }
    }
  }
  return problems;
}
