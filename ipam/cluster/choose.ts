/**
 * The address one allocation takes in one family, as a pure function of what the
 * transaction read (the allocate.ts transaction does the reads and the writes): a
 * requested address in its block, else the next free address of the node's blocks after
 * the node's cursor (round robin, pick.ts), else the first address of a new block.
 * @module
 */

import type { Cidr, Family, Ip } from "../addr.ts";
import { containsIp, formatCidr, formatIp, parseCidr, parseIp } from "../addr.ts";
import { AddressUnavailableError, IpamExhaustedError } from "../errors.ts";
import { type AddressRange, pickNext, type Used } from "../pick.ts";
import { blockContaining, blockRange, freeBlock } from "./blocks.ts";
import type { BlockKv, Pool } from "./types.ts";

/** What one family's choice is made from. */
export interface FamilyInput {
  family: Family;
  node: string;
  /** The addresses requested in this family (more than one is refused). */
  requested: readonly Ip[];
  pools: readonly Pool[];
  /** Every claimed block of the cluster. */
  blocks: readonly BlockKv[];
  /** Reserved addresses (canonical text). */
  reserved: ReadonlySet<string>;
  /** The node's blocks of this family, each with its used addresses (unused when requested). */
  mine: readonly { block: BlockKv; used: readonly bigint[] }[];
  /** The last address the node handed out in this family. */
  cursor?: bigint | undefined;
}

/**
 * The choice: `owner` is the node's block the address is in (compared unchanged); without
 * it, `pool` is where block `block` is claimed. `next` says the cursor moves.
 */
export interface FamilyChoice {
  ip: bigint;
  block: Cidr;
  owner?: BlockKv;
  pool?: Pool;
  next: boolean;
}

export function chooseAddress(input: FamilyInput): FamilyChoice {
  if (input.requested.length > 1) {
    throw new AddressUnavailableError(`more than one IPv${input.family} address requested`);
  }
  const want = input.requested[0];
  return want ? chooseRequested(input, want) : chooseNext(input);
}

/** A requested address: in a pool, not reserved, not the gateway, not in another's block. */
function chooseRequested(input: FamilyInput, want: Ip): FamilyChoice {
  const text = formatIp(want.family, want.value);
  const pool = input.pools.find((p) => containsIp(parseCidr(p.cidr), want));
  if (!pool) throw new AddressUnavailableError(`requested address ${text} is not in any pool`);
  if (input.reserved.has(text)) {
    throw new AddressUnavailableError(`requested address ${text} is reserved`);
  }
  const block = blockContaining(want, pool.blockPrefix);
  const range = blockRange(block);
  if (want.value === range.gateway || want.value < range.first || want.value > range.last) {
    throw new AddressUnavailableError(
      `requested address ${text} is the network, gateway or broadcast address of block ${
        formatCidr(block)
      }`,
    );
  }
  const owner = input.blocks.find((b) => b.value.cidr === formatCidr(block));
  if (owner && owner.value.node !== input.node) {
    throw new AddressUnavailableError(
      `requested address ${text} is in block ${owner.value.cidr} of node ${owner.value.node}`,
    );
  }
  return { ip: want.value, block, ...(owner ? { owner } : { pool }), next: false };
}

/** A node block's allocatable range, its reserved addresses excluded. */
export type BlockRange = AddressRange & { owner: BlockKv };

/** The allocatable ranges of the node's blocks, reservations excluded (in block order). */
export function blockRanges(
  blocks: readonly BlockKv[],
  reserved: ReadonlySet<string>,
): BlockRange[] {
  const reservedIps = [...reserved].map((t) => parseIp(t));
  return blocks.map((b) => {
    const c = parseCidr(b.value.cidr);
    const ex = new Set(reservedIps.filter((rip) => containsIp(c, rip)).map((rip) => rip.value));
    return { ...blockRange(c, ex), owner: b };
  });
}

/** The next free address of `ranges` after the cursor, or undefined when they are full. */
export function nextInBlocks(
  ranges: readonly BlockRange[],
  used: Used,
  cursor: bigint | undefined,
): FamilyChoice | undefined {
  const pick = pickNext(ranges, used, cursor);
  if (!pick) return undefined;
  const rg = ranges[pick.range]!;
  return { ip: pick.ip, block: rg.subnet, owner: rg.owner, next: true };
}

/** The next free address of the node's blocks, or the first of a newly claimed block. */
function chooseNext(input: FamilyInput): FamilyChoice {
  const used = new Set<bigint>();
  for (const m of input.mine) for (const u of m.used) used.add(u);
  const ranges = blockRanges(input.mine.map((m) => m.block), input.reserved);
  const found = nextInBlocks(ranges, used, input.cursor);
  if (found) return found;
  const { pool, block } = claimIn(input);
  return { ip: blockRange(block).first, block, pool, next: true };
}

/** The node's blocks of a family are full: a free block in the first pool with room. */
function claimIn(input: FamilyInput): { pool: Pool; block: Cidr } {
  const taken = new Set(input.blocks.map((b) => b.value.cidr));
  const reasons: string[] = [];
  for (const pool of input.pools.filter((p) => p.family === input.family)) {
    try {
      return { pool, block: freeBlock(pool, input.node, taken) };
    } catch (e) {
      if (!(e instanceof IpamExhaustedError)) throw e;
      reasons.push(pool.cidr);
    }
  }
  throw new IpamExhaustedError(
    `no free IPv${input.family} address for node ${input.node}: its blocks are full and pool ${
      reasons.join(", ")
    } has no free block`,
  );
}
