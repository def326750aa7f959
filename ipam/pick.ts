/**
 * Choosing the next free address: round robin over a list of ranges, the policy shared
 * by the embedded allocator (host-local shaped ranges) and the cluster allocator (a
 * node's blocks). Pure: it is given what is used and where the cursor is.
 *
 * It never enumerates a range: every candidate it skips is used or excluded, so it looks
 * at most at (used + excluded + 1) addresses whatever the size of the range (a /64).
 * @module
 */

import type { Cidr, Family } from "./addr.ts";

/** An allocatable span inside a subnet, with addresses never handed out. */
export interface AddressRange {
  family: Family;
  subnet: Cidr;
  /** First and last allocatable addresses, inclusive. */
  first: bigint;
  last: bigint;
  /** Addresses inside [first, last] never handed out (the gateway, reservations). */
  exclude: ReadonlySet<bigint>;
}

/** What is used: only asked whether an address is. */
export type Used = Pick<ReadonlySet<bigint>, "has">;

/**
 * The first address after `cursor` (wrapping around the list of ranges) that is neither
 * used nor excluded; `undefined` when every address is taken. With no cursor, or a cursor
 * outside every range, the search starts at the first range's first address.
 */
export function pickNext(
  ranges: readonly AddressRange[],
  used: Used,
  cursor?: bigint,
): { range: number; ip: bigint } | undefined {
  if (ranges.length === 0) return undefined;
  // Where to start: just after the cursor, in the range that holds it.
  let ri = 0;
  let next = ranges[0]!.first;
  if (cursor !== undefined) {
    const at = ranges.findIndex((r) => cursor >= r.first && cursor <= r.last);
    if (at >= 0) {
      ri = at;
      next = cursor + 1n;
    }
  }
  let budget = 0n;
  for (const r of ranges) budget += r.last - r.first + 1n;
  // Visit at most every address once; in practice we stop after used+excluded+1.
  let skipped = 0n;
  let wrapped = 0;
  while (skipped < budget) {
    const r = ranges[ri]!;
    if (next > r.last) {
      ri = (ri + 1) % ranges.length;
      next = ranges[ri]!.first;
      if (ri === 0 && ++wrapped > 2) break;
      continue;
    }
    if (!used.has(next) && !r.exclude.has(next)) return { range: ri, ip: next };
    next++;
    skipped++;
  }
  return undefined;
}

/** Index of the range holding `ip`, or -1. */
export function rangeOf(ranges: readonly AddressRange[], family: Family, ip: bigint): number {
  return ranges.findIndex((r) => r.family === family && ip >= r.first && ip <= r.last);
}

/** Number of allocatable addresses (size minus exclusions inside the range). */
export function capacity(ranges: readonly AddressRange[]): bigint {
  let n = 0n;
  for (const r of ranges) {
    let ex = 0n;
    for (const e of r.exclude) if (e >= r.first && e <= r.last) ex++;
    n += r.last - r.first + 1n - ex;
  }
  return n;
}
