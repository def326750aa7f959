/**
 * Allocation: one address per family the pools cover, inside the node's blocks (claiming
 * another when they are full), written with the handle in one transaction. The choice
 * per family is choose.ts's; this reads what it needs and writes what it decided.
 * @module
 */

import { type Family, formatCidr, formatIp, type Ip, parseCidr, parseIp } from "../addr.ts";
import { AttachmentWrites, refuseHeld } from "../attachments.ts";
import { AddressUnavailableError, IpamExhaustedError } from "../errors.ts";
import { checkAttachment, type HandleRecord } from "../records.ts";
import { atomically, type KV, type Store, type StoreReader } from "../store.ts";
import { blockRange, claimWrites, readBlocks, readPools } from "./blocks.ts";
import { chooseAddress, type FamilyChoice } from "./choose.ts";
import { K, lastSegment, PREFIX } from "./keys.ts";
import {
  type BlockKv,
  checkNodeName,
  type ClusterAllocation,
  type ClusterRequest,
  parse,
  type Pool,
} from "./types.ts";

/** The requested addresses of a request, parsed (the prefix length is ignored). */
export function parseRequested(req: ClusterRequest): Ip[] {
  checkAttachment(req);
  checkNodeName(req.node);
  return (req.requestedIPs ?? []).map((t) => {
    try {
      return parseIp(t.replace(/\/\d+$/, ""));
    } catch {
      throw new AddressUnavailableError(
        `requested address ${JSON.stringify(t)} is not an IP address`,
      );
    }
  });
}

/** What every family's choice reads, read at once: one round trip, not four. */
interface Reads {
  pools: Pool[];
  blocks: BlockKv[];
  reserved: Set<string>;
  families: Family[];
}

async function readAll(r: StoreReader, req: ClusterRequest, requested: Ip[]): Promise<Reads> {
  const [handleKv, pools, blocks, reservedKvs] = await Promise.all([
    r.get(K.handle(req)),
    readPools(r),
    readBlocks(r),
    r.list(PREFIX.reservations),
  ]);
  refuseHeld(handleKv, req, (kv) => parse<HandleRecord>(kv));
  if (pools.length === 0) throw new IpamExhaustedError("no address pool is configured");
  const families = [...new Set(pools.map((p) => p.family))].sort() as Family[];
  for (const ip of requested) {
    if (!families.includes(ip.family)) {
      throw new AddressUnavailableError(
        `requested address ${formatIp(ip.family, ip.value)} is not in any pool`,
      );
    }
  }
  const reserved = new Set(reservedKvs.map((kv) => lastSegment(kv.key)));
  return { pools, blocks, reserved, families };
}

type FamilyReads = Promise<[KV[][], KV | undefined]>;

/**
 * Each family's used addresses and cursor, for every family not requested at once: one
 * round trip for a dual-stack pod, not one per family. (The handler keeps a family that
 * is never awaited, after an earlier one failed, from being an unhandled rejection.)
 */
function startFamilyReads(
  r: StoreReader,
  node: string,
  rd: Reads,
  requested: Ip[],
): Map<Family, FamilyReads> {
  return new Map(
    rd.families.filter((fam) => !requested.some((ip) => ip.family === fam)).map((fam) => {
      const p: FamilyReads = Promise.all([
        Promise.all(nodeBlocks(rd, node, fam).map((b) => r.list(K.ipsOf(parseCidr(b.value.cidr))))),
        r.get(K.cursor(node, fam)),
      ]);
      p.catch(() => {});
      return [fam, p] as const;
    }),
  );
}

function nodeBlocks(rd: Reads, node: string, fam: Family): BlockKv[] {
  return rd.blocks.filter((b) => b.value.node === node && parseCidr(b.value.cidr).family === fam);
}

/** One family's choice, with the reads it needs (used addresses and cursor, or the key). */
async function choose(
  r: StoreReader,
  req: ClusterRequest,
  rd: Reads,
  fam: Family,
  requested: Ip[],
  reads: Map<Family, FamilyReads>,
): Promise<FamilyChoice> {
  const want = requested.filter((ip) => ip.family === fam);
  const base = { family: fam, node: req.node, requested: want, ...rd };
  if (want.length) {
    const c = chooseAddress({ ...base, mine: [] });
    const text = formatIp(fam, c.ip);
    if (await r.get(K.ip(c.block, text))) {
      throw new AddressUnavailableError(`requested address ${text} is already in use`);
    }
    return c;
  }
  const [usedLists, cursorKv] = await reads.get(fam)!;
  const mine = nodeBlocks(rd, req.node, fam).map((block, i) => ({
    block,
    used: usedLists[i]!.map((kv) => parseIp(lastSegment(kv.key)).value),
  }));
  const cursor = cursorKv ? parseIp(cursorKv.value).value : undefined;
  return chooseAddress({ ...base, mine, cursor });
}

/**
 * Adds one family's chosen address to the writes: its block (claimed, or compared
 * unchanged), the node's cursor, the address record.
 */
async function write(
  r: StoreReader,
  w: AttachmentWrites,
  req: ClusterRequest,
  fam: Family,
  c: FamilyChoice,
): Promise<ClusterAllocation> {
  if (c.owner) {
    w.compare.push({ key: c.owner.kv.key, modRevision: c.owner.kv.modRevision });
  } else if (c.next) {
    const claim = await claimWrites(r, c.pool!, c.block, req.node, w.createdAt);
    w.compare.push(...claim.compare);
    w.mutations.push(...claim.mutations);
  } else {
    // A requested address in a block nobody holds: claimed with it (the pool not compared).
    const b = {
      cidr: formatCidr(c.block),
      pool: c.pool!.cidr,
      node: req.node,
      claimedAt: w.createdAt,
    };
    w.compare.push({ key: K.block(c.block), absent: true });
    w.mutations.push({ put: K.block(c.block), value: JSON.stringify(b) });
  }
  const text = formatIp(fam, c.ip);
  if (c.next) w.mutations.push({ put: K.cursor(req.node, fam), value: text });
  w.address(K.ip(c.block, text), text, [K.reservation(text)]);
  return allocationOf(fam, c);
}

/** What an allocation returns for one family's choice. */
export function allocationOf(fam: Family, c: FamilyChoice): ClusterAllocation {
  const text = formatIp(fam, c.ip);
  return {
    family: fam,
    address: `${text}/${c.block.prefix}`,
    ip: text,
    gateway: formatIp(fam, blockRange(c.block).gateway),
    block: formatCidr(c.block),
  };
}

/** Allocates for `req` (its requested addresses parsed) in one transaction. */
export function allocate(
  store: Store,
  req: ClusterRequest,
  requested: Ip[],
): Promise<ClusterAllocation[]> {
  return atomically(store, async (r) => {
    const rd = await readAll(r, req, requested);
    const reads = startFamilyReads(r, req.node, rd, requested);
    const w = new AttachmentWrites(K.handle(req), req, podOf(req), req.node);
    const keys: string[] = [];
    const out: ClusterAllocation[] = [];
    for (const fam of rd.families) {
      const c = await choose(r, req, rd, fam, requested, reads);
      const a = await write(r, w, req, fam, c);
      keys.push(K.ip(c.block, a.ip));
      out.push(a);
    }
    return { txn: w.txn({ keys, node: req.node }), result: out };
  }, { what: `allocation on node ${req.node}`, attempts: 50 });
}

/** The pod fields of a request that are set, for its records. */
export function podOf(req: ClusterRequest) {
  return {
    ...(req.podNamespace ? { podNamespace: req.podNamespace } : {}),
    ...(req.podName ? { podName: req.podName } : {}),
    ...(req.podUid ? { podUid: req.podUid } : {}),
  };
}
