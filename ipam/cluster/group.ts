/**
 * Group commit: a node's allocations as the node agent makes them, many in one store
 * transaction. The agent keeps what its node's allocations need in memory (the node's
 * blocks with the revision each was read at, the addresses used in them, the cursors,
 * the reservations), so an allocation reads nothing; every allocation queued while a
 * commit is in flight goes into the next one.
 *
 * What makes this safe is what makes allocate.ts safe: the transaction compares each
 * address key, its reservation key and each handle key absent, and each block it uses
 * unchanged since it was read. A cache that is out of date (the admin CLI allocated or
 * reserved an address, another process released a block) only fails a commit; the agent
 * then reads everything again, answers requests whose handle exists with
 * HandleExistsError, and tries the rest again. A request the cache cannot serve (a
 * requested address, or full blocks that need a claim) goes through allocate.ts alone.
 * @module
 */

import { type Family, formatIp, parseCidr, parseIp } from "../addr.ts";
import { AttachmentWrites, refuseHeld } from "../attachments.ts";
import { IpamExhaustedError } from "../errors.ts";
import { handleId, type HandleRecord } from "../records.ts";
import { type Compare, type Mutation, type Store, StoreConflictError, type Txn } from "../store.ts";
import { allocate, allocationOf, podOf } from "./allocate.ts";
import { readBlocks, readPools } from "./blocks.ts";
import { type BlockRange, blockRanges, nextInBlocks } from "./choose.ts";
import { K, lastSegment, PREFIX } from "./keys.ts";
import { type ClusterAllocation, type ClusterRequest, parse } from "./types.ts";
import type { Ip } from "../addr.ts";

/**
 * etcd refuses a transaction with more than 128 compares or 128 writes (`--max-txn-ops`,
 * default 128); a group stays under both with room to spare.
 */
export const MAX_GROUP_OPS = 120;

/** Attempts before a group's requests fail with StoreConflictError (as allocate.ts). */
const ATTEMPTS = 50;

/** What one family's allocations are made from, kept between commits. */
interface FamilyCache {
  ranges: BlockRange[];
  used: Set<bigint>;
  cursor: bigint | undefined;
}

interface Cache {
  families: Family[];
  byFamily: Map<Family, FamilyCache>;
}

interface Pending {
  req: ClusterRequest;
  requested: Ip[];
  resolve: (a: ClusterAllocation[]) => void;
  reject: (e: unknown) => void;
}

/** Counts of what the allocator did, for tests and metrics. */
export interface GroupStats {
  /** Transactions committed (groups), and the requests they carried. */
  commits: number;
  grouped: number;
  /** Commits that failed a compare (the cache was out of date). */
  conflicts: number;
  /** Times the cache was read from the store. */
  loads: number;
  /** Requests that went through allocate.ts alone (requested address, claim). */
  alone: number;
}

/** What the allocator just did, for metrics: a group committed, or a commit lost a compare. */
export type GroupEvent = { kind: "commit"; requests: number } | { kind: "conflict" };

/** One node's allocations through one store, grouped. */
export class NodeAllocator {
  #cache: Cache | undefined;
  readonly #queue: Pending[] = [];
  #running = false;
  readonly stats: GroupStats = { commits: 0, grouped: 0, conflicts: 0, loads: 0, alone: 0 };

  constructor(
    readonly store: Store,
    readonly node: string,
    readonly observe?: (e: GroupEvent) => void,
  ) {}

  /** Allocates for `req` (its requested addresses parsed): queued, then committed in a group. */
  allocate(req: ClusterRequest, requested: Ip[]): Promise<ClusterAllocation[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ req, requested, resolve, reject });
      if (!this.#running) this.#run();
    });
  }

  /** Addresses released elsewhere in this process: free again in the cache. */
  forget(ips: readonly string[]): void {
    if (!this.#cache) return;
    for (const t of ips) {
      try {
        const ip = parseIp(t);
        this.#cache.byFamily.get(ip.family)?.used.delete(ip.value);
      } catch { /* not an address: nothing cached under it */ }
    }
  }

  /** Forgets everything; the next allocation reads the store again. */
  invalidate(): void {
    this.#cache = undefined;
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length) {
        const head = this.#queue[0]!;
        if (head.requested.length) {
          this.#queue.shift();
          await this.#alone(head);
          continue;
        }
        await this.#group(this.#take());
      }
    } finally {
      this.#running = false;
    }
  }

  /** A request the cache cannot serve, through allocate.ts; the cache is read again after. */
  async #alone(p: Pending): Promise<void> {
    this.stats.alone++;
    this.#cache = undefined;
    try {
      p.resolve(await allocate(this.store, p.req, p.requested));
    } catch (e) {
      p.reject(e);
    }
  }

  /**
   * The queue's head requests that fit one transaction: none with a requested address,
   * no attachment twice (etcd refuses a key written twice in one transaction).
   */
  #take(): Pending[] {
    const fams = this.#cache?.families.length ?? 2;
    const perRequest = 1 + 2 * fams; // handle, and per family the address and its reservation
    const max = Math.max(1, Math.floor((MAX_GROUP_OPS - 2 * fams) / perRequest));
    const out: Pending[] = [];
    const ids = new Set<string>();
    for (let i = 0; i < this.#queue.length && out.length < max;) {
      const p = this.#queue[i]!;
      if (p.requested.length) break;
      const id = handleId(p.req);
      if (ids.has(id)) {
        i++;
        continue;
      }
      ids.add(id);
      out.push(p);
      this.#queue.splice(i, 1);
    }
    return out;
  }

  /**
   * Commits `group`, retrying after a lost compare. A store that fails (unreachable, a
   * refused request) fails the requests still waiting in the group.
   */
  async #group(group: Pending[]): Promise<void> {
    const waiting = { group };
    try {
      await this.#commitGroup(waiting);
    } catch (e) {
      this.#cache = undefined;
      for (const p of waiting.group) p.reject(e);
    }
  }

  /** The attempts; `waiting.group` is always the requests not yet answered or requeued. */
  async #commitGroup(waiting: { group: Pending[] }): Promise<void> {
    for (let attempt = 0;; attempt++) {
      let group = waiting.group;
      if (group.length === 0) return;
      if (attempt === ATTEMPTS) {
        throw new StoreConflictError(
          `allocation on node ${this.node} lost ${ATTEMPTS} attempts to concurrent writers`,
        );
      }
      const cache = this.#cache ??= await this.#load();
      const plan = this.#plan(cache, group);
      if (plan.full) {
        // The blocks are full from request `planned.length` on: the requests planned are
        // committed; the next round finds that one first, which then goes through
        // allocate.ts alone (it claims a block), and the rest after it.
        const rest = group.slice(plan.planned.length);
        this.#queue.unshift(...(plan.planned.length ? rest : rest.slice(1)));
        waiting.group = group = plan.planned;
        if (!group.length) return await this.#alone(rest[0]!);
      }
      if ((await this.store.commit(plan.txn)).ok) {
        this.stats.commits++;
        this.stats.grouped += group.length;
        this.observe?.({ kind: "commit", requests: group.length });
        for (const [fam, fc] of cache.byFamily) {
          const picked = plan.picked.get(fam);
          if (picked !== undefined) fc.cursor = picked;
          for (const ip of plan.taken.get(fam) ?? []) fc.used.add(ip);
        }
        group.forEach((p, i) => p.resolve(plan.results[i]!));
        return;
      }
      // A compare failed: the cache is out of date, or a handle exists. Read again; the
      // requests whose handle exists are refused, the rest try again.
      this.stats.conflicts++;
      this.observe?.({ kind: "conflict" });
      this.#cache = undefined;
      const handles = await Promise.all(group.map((p) => this.store.get(K.handle(p.req))));
      waiting.group = group.filter((p, i) => {
        try {
          refuseHeld(handles[i], p.req, (kv) => parse<HandleRecord>(kv));
          return true;
        } catch (e) {
          p.reject(e);
          return false;
        }
      });
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 ** attempt)));
    }
  }

  /** Reads what the node's allocations are made from. */
  async #load(): Promise<Cache> {
    this.stats.loads++;
    const s = this.store;
    const [pools, blocks, reservedKvs] = await Promise.all([
      readPools(s),
      readBlocks(s),
      s.list(PREFIX.reservations),
    ]);
    if (pools.length === 0) throw new IpamExhaustedError("no address pool is configured");
    const families = [...new Set(pools.map((p) => p.family))].sort() as Family[];
    const reserved = new Set(reservedKvs.map((kv) => lastSegment(kv.key)));
    const byFamily = new Map<Family, FamilyCache>();
    await Promise.all(families.map(async (fam) => {
      const mine = blocks.filter((b) =>
        b.value.node === this.node && parseCidr(b.value.cidr).family === fam
      );
      const [usedLists, cursorKv] = await Promise.all([
        Promise.all(mine.map((b) => s.list(K.ipsOf(parseCidr(b.value.cidr))))),
        s.get(K.cursor(this.node, fam)),
      ]);
      byFamily.set(fam, {
        ranges: blockRanges(mine, reserved),
        used: new Set(usedLists.flat().map((kv) => parseIp(lastSegment(kv.key)).value)),
        cursor: cursorKv ? parseIp(cursorKv.value).value : undefined,
      });
    }));
    return { families, byFamily };
  }

  /**
   * One transaction for the group, from the cache (not changed: the picks are applied
   * only once the commit holds). Stops at the first request whose family has no free
   * address left (`full`).
   */
  #plan(cache: Cache, group: Pending[]) {
    const compare: Compare[] = [];
    const mutations: Mutation[] = [];
    const results: ClusterAllocation[][] = [];
    const picked = new Map<Family, bigint>();
    const taken = new Map<Family, Set<bigint>>();
    const blocksUsed = new Map<string, Compare>();
    const planned: Pending[] = [];
    let full = false;
    outer: for (const p of group) {
      const w = new AttachmentWrites(K.handle(p.req), p.req, podOf(p.req), this.node);
      const keys: string[] = [];
      const out: ClusterAllocation[] = [];
      const mine: [Family, bigint][] = [];
      for (const fam of cache.families) {
        const fc = cache.byFamily.get(fam)!;
        const t = taken.get(fam);
        const used = t ? { has: (ip: bigint) => fc.used.has(ip) || t.has(ip) } : fc.used;
        const c = nextInBlocks(fc.ranges, used, picked.get(fam) ?? fc.cursor);
        if (!c) {
          full = true;
          break outer;
        }
        mine.push([fam, c.ip]);
        const a = allocationOf(fam, c);
        const key = K.ip(c.block, a.ip);
        w.address(key, a.ip, [K.reservation(a.ip)]);
        blocksUsed.set(c.owner!.kv.key, {
          key: c.owner!.kv.key,
          modRevision: c.owner!.kv.modRevision,
        });
        keys.push(key);
        out.push(a);
      }
      for (const [fam, ip] of mine) {
        if (!taken.has(fam)) taken.set(fam, new Set());
        taken.get(fam)!.add(ip);
        picked.set(fam, ip);
      }
      const txn = w.txn({ keys, node: this.node });
      compare.push(...txn.compare!);
      mutations.push(...txn.mutations);
      results.push(out);
      planned.push(p);
    }
    for (const [fam, ip] of picked) {
      mutations.push({ put: K.cursor(this.node, fam), value: formatIp(fam, ip) });
    }
    const txn: Txn = { compare: [...blocksUsed.values(), ...compare], mutations };
    return { txn, results, picked, planned, full, taken };
  }
}
