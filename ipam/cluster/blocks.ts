/**
 * Pools and the blocks nodes claim in them: the block arithmetic (pure) and the
 * transactions that add and remove pools and claim blocks.
 * @module
 */

import {
  type Cidr,
  cidrSize,
  formatCidr,
  type Ip,
  lastAddress,
  nthSubnet,
  overlaps,
  parseCidr,
  subnetCount,
} from "../addr.ts";
import { IpamConfigError, IpamError, IpamExhaustedError } from "../errors.ts";
import type { AddressRange } from "../pick.ts";
import { atomically, type Compare, type Mutation, type Store, type StoreReader } from "../store.ts";
import { K, PREFIX } from "./keys.ts";
import {
  type Block,
  type BlockKv,
  type BlockUsage,
  checkNodeName,
  DEFAULT_BLOCK_PREFIX,
  parse,
  type Pool,
} from "./types.ts";

/** The allocatable range of a block: gateway = network + 1, pods after it. */
export function blockRange(
  block: Cidr,
  exclude: Set<bigint> = new Set(),
): AddressRange & { gateway: bigint } {
  const gateway = block.network + 1n;
  const top = lastAddress(block);
  return {
    family: block.family,
    subnet: block,
    first: block.network + 2n,
    last: block.family === 4 ? top - 1n : top,
    exclude,
    gateway,
  };
}

/** The block of length `prefix` that holds `ip`. */
export function blockContaining(ip: Ip, prefix: number): Cidr {
  const size = cidrSize({ family: ip.family, network: 0n, prefix });
  return { family: ip.family, network: ip.value - (ip.value % size), prefix };
}

function blockCapacity(block: Cidr): bigint {
  const r = blockRange(block);
  return r.last >= r.first ? r.last - r.first + 1n : 0n;
}

/** FNV-1a over the node name: where a node starts looking for a free block. */
function hashStart(node: string, count: bigint): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(node)) {
    h = ((h ^ BigInt(b)) * 0x100000001b3n) & ((1n << 64n) - 1n);
  }
  return h % count;
}

/**
 * Picks a free block of `pool` for `node` (not yet written): probing from a point given
 * by the node's name, so nodes claiming at once rarely collide. Looks at most at
 * (claimed blocks + 1) candidates, never enumerating the pool.
 */
export function freeBlock(pool: Pool, node: string, taken: ReadonlySet<string>): Cidr {
  const p = parseCidr(pool.cidr);
  const count = subnetCount(p, pool.blockPrefix);
  const start = hashStart(node, count);
  const limit = BigInt(taken.size) + 1n < count ? BigInt(taken.size) + 1n : count;
  for (let i = 0n; i < limit; i++) {
    const b = nthSubnet(p, pool.blockPrefix, (start + i) % count);
    if (!taken.has(formatCidr(b))) return b;
  }
  throw new IpamExhaustedError(`pool ${pool.cidr} has no free /${pool.blockPrefix} block left`);
}

export async function readPools(r: StoreReader): Promise<Pool[]> {
  return (await r.list(PREFIX.pools)).map((kv) => parse<Pool>(kv));
}

export async function readBlocks(r: StoreReader): Promise<BlockKv[]> {
  return (await r.list(PREFIX.blocks)).map((kv) => ({ kv, value: parse<Block>(kv) }));
}

/** The blocks `node` holds. */
export async function nodeBlocks(r: StoreReader, node: string): Promise<Block[]> {
  return (await readBlocks(r)).filter((b) => b.value.node === node).map((b) => b.value);
}

/** Every block with its owner and utilisation. */
export async function blockUsage(store: Store): Promise<BlockUsage[]> {
  const out: BlockUsage[] = [];
  for (const b of await readBlocks(store)) {
    const c = parseCidr(b.value.cidr);
    out.push({
      ...b.value,
      used: (await store.list(K.ipsOf(c))).length,
      capacity: String(blockCapacity(c)),
    });
  }
  return out;
}

/** The new pool record for `cidrText`; throws naming a bad block prefix. */
function poolSpec(cidrText: string, blockPrefix?: number): { cidr: Cidr; pool: Pool } {
  let cidr: Cidr;
  try {
    cidr = parseCidr(cidrText);
  } catch (e) {
    throw new IpamConfigError("pool", (e as Error).message);
  }
  const bp = blockPrefix ?? Math.max(cidr.prefix, DEFAULT_BLOCK_PREFIX[cidr.family]);
  const maxPrefix = cidr.family === 4 ? 30 : 126;
  if (!Number.isInteger(bp) || bp < cidr.prefix || bp > maxPrefix) {
    throw new IpamConfigError(
      "blockPrefix",
      `/${bp} does not fit pool ${formatCidr(cidr)} (between /${cidr.prefix} and /${maxPrefix})`,
    );
  }
  const pool: Pool = {
    cidr: formatCidr(cidr),
    family: cidr.family,
    blockPrefix: bp,
    createdAt: new Date().toISOString(),
  };
  return { cidr, pool };
}

/** Adds a pool; refuses one that overlaps an existing pool. Idempotent for an equal spec. */
export function addPool(store: Store, cidrText: string, blockPrefix?: number): Promise<Pool> {
  const { cidr, pool } = poolSpec(cidrText, blockPrefix);
  return atomically(store, async (r) => {
    const existing = await readPools(r);
    const same = existing.find((p) => p.cidr === pool.cidr);
    if (same) {
      if (same.blockPrefix !== pool.blockPrefix) {
        throw new IpamConfigError(
          "pool",
          `${pool.cidr} exists with block prefix /${same.blockPrefix}`,
        );
      }
      return { result: same };
    }
    const clash = existing.find((p) => overlaps(parseCidr(p.cidr), cidr));
    if (clash) throw new IpamConfigError("pool", `${pool.cidr} overlaps pool ${clash.cidr}`);
    return {
      txn: {
        compare: [{ key: K.pool(cidr), absent: true }],
        mutations: [{ put: K.pool(cidr), value: JSON.stringify(pool) }],
      },
      result: pool,
    };
  }, { what: "pool add" });
}

/** Removes a pool and its empty blocks; refused while any address is allocated in it. */
export function removePool(store: Store, cidrText: string): Promise<void> {
  const cidr = parseCidr(cidrText);
  return atomically(store, async (r) => {
    const poolKv = await r.get(K.pool(cidr));
    if (!poolKv) throw new IpamError(`no pool ${formatCidr(cidr)}`);
    const blocks = (await readBlocks(r)).filter((b) => b.value.pool === formatCidr(cidr));
    let used = 0;
    for (const b of blocks) used += (await r.list(K.ipsOf(parseCidr(b.value.cidr)))).length;
    if (used > 0) {
      throw new IpamError(
        `pool ${formatCidr(cidr)} still has ${used} allocated address${
          used === 1 ? "" : "es"
        }; release them first`,
      );
    }
    const compare: Compare[] = [{ key: poolKv.key, modRevision: poolKv.modRevision }];
    const mutations: Mutation[] = [{ delete: poolKv.key }];
    for (const b of blocks) {
      compare.push({ key: b.kv.key, modRevision: b.kv.modRevision });
      mutations.push({ delete: b.kv.key });
    }
    return { txn: { compare, mutations }, result: undefined };
  }, { what: "pool remove" });
}

/**
 * The writes that claim block `c` of `pool` for `node`: the block created if absent, the
 * pool unchanged (a pool removed meanwhile fails the claim).
 */
export async function claimWrites(
  r: StoreReader,
  pool: Pool,
  c: Cidr,
  node: string,
  claimedAt: string,
): Promise<{ block: Block; compare: Compare[]; mutations: Mutation[] }> {
  const poolKv = (await r.get(K.pool(parseCidr(pool.cidr))))!;
  const block: Block = { cidr: formatCidr(c), pool: pool.cidr, node, claimedAt };
  return {
    block,
    compare: [{ key: K.block(c), absent: true }, {
      key: poolKv.key,
      modRevision: poolKv.modRevision,
    }],
    mutations: [{ put: K.block(c), value: JSON.stringify(block) }],
  };
}

/** Ensures `node` holds a block in every pool; returns all its blocks. Idempotent. */
export function claimBlocks(store: Store, node: string): Promise<Block[]> {
  checkNodeName(node);
  return atomically(store, async (r) => {
    const pools = await readPools(r);
    const all = await readBlocks(r);
    const mine = all.filter((b) => b.value.node === node).map((b) => b.value);
    const taken = new Set(all.map((b) => b.value.cidr));
    const compare: Compare[] = [];
    const mutations: Mutation[] = [];
    const added: Block[] = [];
    for (const pool of pools) {
      if (mine.some((b) => b.pool === pool.cidr)) continue;
      const c = freeBlock(pool, node, taken);
      taken.add(formatCidr(c));
      const w = await claimWrites(r, pool, c, node, new Date().toISOString());
      compare.push(...w.compare);
      mutations.push(...w.mutations);
      added.push(w.block);
    }
    if (!mutations.length) return { result: mine };
    return { txn: { compare, mutations }, result: [...mine, ...added] };
  }, { what: `block claim for node ${node}`, attempts: 50 });
}
