/**
 * Cluster IPAM: pools → node blocks → addresses, shared by every node of a cluster
 * through a Store (etcd in a cluster; the local store works for one machine). Key schema
 * in ipam/SCHEMA.md.
 *
 * - A node claims one block per pool (idempotent: a restarted node gets its own blocks
 *   back) and another when its blocks of a family are full. A block's first usable
 *   address is the node bridge's gateway; pods get the rest.
 * - An attachment (container ID + ifname) owns the addresses of one pod interface: one
 *   per family the pools cover.
 * - Every change is one compare-then-write transaction: a block can never have two
 *   owners, an address never two handles; a decision made on stale reads fails its
 *   compares and is made again.
 * @module
 */

import {
  type Cidr,
  cidrKey,
  cidrSize,
  containsCidr,
  containsIp,
  type Family,
  formatCidr,
  formatIp,
  type Ip,
  lastAddress,
  nthSubnet,
  overlaps,
  parseCidr,
  parseCidrKey,
  parseIp,
  subnetCount,
} from "./addr.ts";
import {
  AddressUnavailableError,
  HandleExistsError,
  IpamConfigError,
  IpamError,
  IpamExhaustedError,
} from "./errors.ts";
import { type AddressRange, pickNext } from "./pick.ts";
import {
  BLOCKS_PREFIX,
  NODES_PREFIX,
  type Peer,
  type PeerChange,
  PeerView,
  watchPeerEvents,
  type WatchPeerOptions,
} from "./peers.ts";
import {
  type AddressRecord,
  type AllocationRow,
  allocationRow,
  type Attachment,
  checkAttachment,
  handleId,
  type HandleRecord,
  sameAttachment,
} from "./records.ts";
import {
  atomically,
  type Compare,
  type KV,
  type Mutation,
  type Store,
  type StoreReader,
} from "./store.ts";

export type { Peer, PeerChange } from "./peers.ts";

export const ROOT = "/ohno/v1/";
const K = {
  pool: (c: Cidr) => `${ROOT}pools/${cidrKey(c)}`,
  block: (c: Cidr) => `${ROOT}blocks/${cidrKey(c)}`,
  node: (n: string) => `${ROOT}nodes/${n}`,
  ip: (block: Cidr, ip: string) => `${ROOT}ips/${cidrKey(block)}/${ip}`,
  ipsOf: (block: Cidr) => `${ROOT}ips/${cidrKey(block)}/`,
  handle: (a: Attachment) => `${ROOT}handles/${handleId(a)}`,
  reservation: (ip: string) => `${ROOT}reservations/${ip}`,
  cursor: (node: string, fam: Family) => `${ROOT}cursors/${node}/${fam}`,
};

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

/** Which node's attachments an operation may see and change (the node agent's own). */
export interface NodeScope {
  node?: string;
}

function inScope(h: ClusterHandle, scope: NodeScope): boolean {
  return scope.node === undefined || h.node === scope.node;
}

const NODE_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function checkNodeName(node: string): void {
  if (!NODE_RE.test(node)) {
    throw new TypeError(`node name ${JSON.stringify(node)} is not valid (lowercase DNS name)`);
  }
}

const parse = <T>(kv: KV) => JSON.parse(kv.value) as T;

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

  // ---------------------------------------------------------------- pools

  async pools(r: StoreReader = this.store): Promise<Pool[]> {
    return (await r.list(`${ROOT}pools/`)).map((kv) => parse<Pool>(kv));
  }

  /** Adds a pool; refuses one that overlaps an existing pool. Idempotent for an equal spec. */
  addPool(cidrText: string, blockPrefix?: number): Promise<Pool> {
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
    return atomically(this.store, async (r) => {
      const existing = await this.pools(r);
      const same = existing.find((p) => p.cidr === pool.cidr);
      if (same) {
        if (same.blockPrefix !== bp) {
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
  removePool(cidrText: string): Promise<void> {
    const cidr = parseCidr(cidrText);
    return atomically(this.store, async (r) => {
      const poolKv = await r.get(K.pool(cidr));
      if (!poolKv) throw new IpamError(`no pool ${formatCidr(cidr)}`);
      const blocks = (await this.#blocks(r)).filter((b) => b.value.pool === formatCidr(cidr));
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

  // ---------------------------------------------------------------- nodes and blocks

  /** Writes (or refreshes) a node's record: its underlay addresses and backend data. */
  async registerNode(
    name: string,
    info: { ips: string[]; backend?: Record<string, unknown> },
  ): Promise<void> {
    checkNodeName(name);
    for (const ip of info.ips) parseIp(ip);
    const rec: NodeRecord = {
      name,
      ips: info.ips,
      ...(info.backend ? { backend: info.backend } : {}),
      updatedAt: new Date().toISOString(),
    };
    await this.store.commit({ mutations: [{ put: K.node(name), value: JSON.stringify(rec) }] });
  }

  /**
   * Creates a record with no addresses for a node that has none (the admin CLI's
   * `allocate --create-node`); an existing record is left as it is. True when created.
   */
  async createNode(name: string): Promise<boolean> {
    checkNodeName(name);
    const rec: NodeRecord = { name, ips: [], updatedAt: new Date().toISOString() };
    const r = await this.store.commit({
      compare: [{ key: K.node(name), absent: true }],
      mutations: [{ put: K.node(name), value: JSON.stringify(rec) }],
    });
    return r.ok;
  }

  async node(name: string): Promise<NodeRecord | undefined> {
    checkNodeName(name);
    const kv = await this.store.get(K.node(name));
    return kv ? parse<NodeRecord>(kv) : undefined;
  }

  async nodes(): Promise<NodeRecord[]> {
    return (await this.store.list(`${ROOT}nodes/`)).map((kv) => parse<NodeRecord>(kv));
  }

  async #blocks(r: StoreReader): Promise<{ kv: KV; value: Block }[]> {
    return (await r.list(`${ROOT}blocks/`)).map((kv) => ({ kv, value: parse<Block>(kv) }));
  }

  async nodeBlocks(node: string, r: StoreReader = this.store): Promise<Block[]> {
    return (await this.#blocks(r)).filter((b) => b.value.node === node).map((b) => b.value);
  }

  /**
   * Picks a free block of `pool` for `node` (not yet written): probing from a point given
   * by the node's name, so nodes claiming at once rarely collide. Looks at most at
   * (claimed blocks + 1) candidates, never enumerating the pool.
   */
  #freeBlock(pool: Pool, node: string, taken: Set<string>): Cidr {
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

  /** Ensures `node` holds a block in every pool; returns all its blocks. Idempotent. */
  claimBlocks(node: string): Promise<Block[]> {
    checkNodeName(node);
    return atomically(this.store, async (r) => {
      const pools = await this.pools(r);
      const all = await this.#blocks(r);
      const mine = all.filter((b) => b.value.node === node).map((b) => b.value);
      const taken = new Set(all.map((b) => b.value.cidr));
      const compare: Compare[] = [];
      const mutations: Mutation[] = [];
      const added: Block[] = [];
      for (const pool of pools) {
        if (mine.some((b) => b.pool === pool.cidr)) continue;
        const poolKv = (await r.get(K.pool(parseCidr(pool.cidr))))!;
        const c = this.#freeBlock(pool, node, taken);
        taken.add(formatCidr(c));
        const block: Block = {
          cidr: formatCidr(c),
          pool: pool.cidr,
          node,
          claimedAt: new Date().toISOString(),
        };
        compare.push({ key: K.block(c), absent: true }, {
          key: poolKv.key,
          modRevision: poolKv.modRevision,
        });
        mutations.push({ put: K.block(c), value: JSON.stringify(block) });
        added.push(block);
      }
      if (!mutations.length) return { result: mine };
      return { txn: { compare, mutations }, result: [...mine, ...added] };
    }, { what: `block claim for node ${node}`, attempts: 50 });
  }

  // ---------------------------------------------------------------- addresses

  /** One address per family the pools cover, inside the node's blocks (claiming more when full). */
  allocate(req: ClusterRequest): Promise<ClusterAllocation[]> {
    checkAttachment(req);
    checkNodeName(req.node);
    const requested = (req.requestedIPs ?? []).map((t) => {
      try {
        return parseIp(t.replace(/\/\d+$/, ""));
      } catch {
        throw new AddressUnavailableError(
          `requested address ${JSON.stringify(t)} is not an IP address`,
        );
      }
    });
    return this.#serial(req.node, () => this.#allocate(req, requested));
  }

  #allocate(req: ClusterRequest, requested: Ip[]): Promise<ClusterAllocation[]> {
    return atomically(this.store, async (r) => {
      // Independent reads in parallel: one round trip's worth of latency, not four.
      const [handleKv, pools, allBlocks, reservedKvs] = await Promise.all([
        r.get(K.handle(req)),
        this.pools(r),
        this.#blocks(r),
        r.list(`${ROOT}reservations/`),
      ]);
      if (handleKv) {
        throw new HandleExistsError(req.containerID, req.ifname, parse<HandleRecord>(handleKv).ips);
      }
      if (pools.length === 0) throw new IpamExhaustedError("no address pool is configured");
      const families = [...new Set(pools.map((p) => p.family))].sort() as Family[];
      for (const ip of requested) {
        if (!families.includes(ip.family)) {
          throw new AddressUnavailableError(
            `requested address ${formatIp(ip.family, ip.value)} is not in any pool`,
          );
        }
      }
      const taken = new Set(allBlocks.map((b) => b.value.cidr));
      const reserved = new Set(reservedKvs.map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1)));
      const createdAt = new Date().toISOString();
      const compare: Compare[] = [{ key: K.handle(req), absent: true }];
      const mutations: Mutation[] = [];
      const out: ClusterAllocation[] = [];
      const keys: string[] = [];

      // Each family's used addresses and cursor, for every family at once: one round trip
      // for a dual-stack pod, not one per family. (The handler keeps a family that is never
      // awaited, after an earlier one failed, from being an unhandled rejection.)
      const nodeBlocks = (fam: Family) =>
        allBlocks.filter((b) =>
          b.value.node === req.node && parseCidr(b.value.cidr).family === fam
        );
      const familyReads = new Map(
        families.filter((fam) => !requested.some((ip) => ip.family === fam)).map((fam) => {
          const p = Promise.all([
            Promise.all(nodeBlocks(fam).map((b) => r.list(K.ipsOf(parseCidr(b.value.cidr))))),
            r.get(K.cursor(req.node, fam)),
          ]);
          p.catch(() => {});
          return [fam, p] as const;
        }),
      );

      for (const fam of families) {
        const want = requested.filter((ip) => ip.family === fam);
        if (want.length > 1) {
          throw new AddressUnavailableError(`more than one IPv${fam} address requested`);
        }
        let block: Cidr;
        let ip: bigint;
        if (want.length === 1) {
          ip = want[0]!.value;
          const text = formatIp(fam, ip);
          const pool = pools.find((p) => containsIp(parseCidr(p.cidr), want[0]!));
          if (!pool) {
            throw new AddressUnavailableError(`requested address ${text} is not in any pool`);
          }
          if (reserved.has(text)) {
            throw new AddressUnavailableError(`requested address ${text} is reserved`);
          }
          block = blockContaining(want[0]!, pool.blockPrefix);
          const range = blockRange(block);
          if (ip === range.gateway || ip < range.first || ip > range.last) {
            throw new AddressUnavailableError(
              `requested address ${text} is the network, gateway or broadcast address of block ${
                formatCidr(block)
              }`,
            );
          }
          const owner = allBlocks.find((b) => b.value.cidr === formatCidr(block));
          if (owner && owner.value.node !== req.node) {
            throw new AddressUnavailableError(
              `requested address ${text} is in block ${owner.value.cidr} of node ${owner.value.node}`,
            );
          }
          if (await r.get(K.ip(block, text))) {
            throw new AddressUnavailableError(`requested address ${text} is already in use`);
          }
          if (owner) {
            compare.push({ key: owner.kv.key, modRevision: owner.kv.modRevision });
          } else {
            const b: Block = {
              cidr: formatCidr(block),
              pool: pool.cidr,
              node: req.node,
              claimedAt: createdAt,
            };
            compare.push({ key: K.block(block), absent: true });
            mutations.push({ put: K.block(block), value: JSON.stringify(b) });
          }
        } else {
          const mine = nodeBlocks(fam);
          const ranges: (AddressRange & { kv: KV })[] = [];
          const used = new Set<bigint>();
          const [usedLists, cursorKv] = await familyReads.get(fam)!;
          mine.forEach((b, i) => {
            const c = parseCidr(b.value.cidr);
            const ex = new Set<bigint>();
            for (const res of reserved) {
              const rip = parseIp(res);
              if (containsIp(c, rip)) ex.add(rip.value);
            }
            ranges.push({ ...blockRange(c, ex), kv: b.kv });
            for (const kv of usedLists[i]!) {
              used.add(parseIp(kv.key.slice(kv.key.lastIndexOf("/") + 1)).value);
            }
          });
          const cursor = cursorKv ? parseIp(cursorKv.value).value : undefined;
          const pick = pickNext(ranges, used, cursor);
          if (pick) {
            const rg = ranges[pick.range]!;
            block = rg.subnet;
            ip = pick.ip;
            compare.push({ key: rg.kv.key, modRevision: rg.kv.modRevision });
          } else {
            // The node's blocks of this family are full: claim another in a pool with room.
            let claimed: { pool: Pool; c: Cidr } | undefined;
            const reasons: string[] = [];
            for (const pool of pools.filter((p) => p.family === fam)) {
              try {
                claimed = { pool, c: this.#freeBlock(pool, req.node, taken) };
                break;
              } catch (e) {
                if (!(e instanceof IpamExhaustedError)) throw e;
                reasons.push(pool.cidr);
              }
            }
            if (!claimed) {
              throw new IpamExhaustedError(
                `no free IPv${fam} address for node ${req.node}: its blocks are full and pool ${
                  reasons.join(", ")
                } has no free block`,
              );
            }
            block = claimed.c;
            ip = blockRange(block).first;
            const b: Block = {
              cidr: formatCidr(block),
              pool: claimed.pool.cidr,
              node: req.node,
              claimedAt: createdAt,
            };
            const poolKv = (await r.get(K.pool(parseCidr(claimed.pool.cidr))))!;
            compare.push({ key: K.block(block), absent: true }, {
              key: poolKv.key,
              modRevision: poolKv.modRevision,
            });
            mutations.push({ put: K.block(block), value: JSON.stringify(b) });
          }
          mutations.push({ put: K.cursor(req.node, fam), value: formatIp(fam, ip) });
        }
        const text = formatIp(fam, ip);
        const rec: AddressRecord = {
          containerID: req.containerID,
          ifname: req.ifname,
          ip: text,
          node: req.node,
          createdAt,
          ...(req.podNamespace ? { podNamespace: req.podNamespace } : {}),
          ...(req.podName ? { podName: req.podName } : {}),
          ...(req.podUid ? { podUid: req.podUid } : {}),
        };
        compare.push({ key: K.ip(block, text), absent: true }, {
          key: K.reservation(text),
          absent: true,
        });
        mutations.push({ put: K.ip(block, text), value: JSON.stringify(rec) });
        keys.push(K.ip(block, text));
        out.push({
          family: fam,
          address: `${text}/${block.prefix}`,
          ip: text,
          gateway: formatIp(fam, blockRange(block).gateway),
          block: formatCidr(block),
        });
      }
      const handle: ClusterHandle = {
        containerID: req.containerID,
        ifname: req.ifname,
        ips: out.map((o) => o.ip),
        keys,
        node: req.node,
        createdAt,
        ...(req.podNamespace ? { podNamespace: req.podNamespace } : {}),
        ...(req.podName ? { podName: req.podName } : {}),
        ...(req.podUid ? { podUid: req.podUid } : {}),
      };
      mutations.push({ put: K.handle(req), value: JSON.stringify(handle) });
      return { txn: { compare, mutations }, result: out };
    }, { what: `allocation on node ${req.node}`, attempts: 50 });
  }

  /**
   * An attachment's handle. With `scope.node` (the node agent), only that node's: an
   * attachment of another node is not found.
   */
  async get(a: Attachment, scope: NodeScope = {}): Promise<ClusterHandle | undefined> {
    checkAttachment(a);
    const kv = await this.store.get(K.handle(a));
    const h = kv ? parse<ClusterHandle>(kv) : undefined;
    return h && inScope(h, scope) ? h : undefined;
  }

  /**
   * Releases an attachment's addresses (idempotent); returns them. With `scope.node` (the
   * node agent), only that node's: another node's attachment is left alone and nothing is
   * returned. Without it (the admin CLI), any node's.
   */
  release(a: Attachment, scope: NodeScope = {}): Promise<string[]> {
    checkAttachment(a);
    return atomically(this.store, async (r) => {
      const kv = await r.get(K.handle(a));
      if (!kv) return { result: [] as string[] };
      const h = parse<ClusterHandle>(kv);
      if (!inScope(h, scope)) return { result: [] as string[] };
      const mutations: Mutation[] = [{ delete: kv.key }];
      for (const key of h.keys ?? []) {
        const ipKv = await r.get(key);
        if (!ipKv) continue;
        const rec = parse<AddressRecord>(ipKv);
        if (rec.containerID === a.containerID && rec.ifname === a.ifname) {
          mutations.push({ delete: key });
        }
      }
      return {
        txn: { compare: [{ key: kv.key, modRevision: kv.modRevision }], mutations },
        result: h.ips,
      };
    }, { what: "release" });
  }

  /** Releases every attachment of `node` that is not in `valid`. */
  async gc(
    node: string,
    valid: Attachment[],
  ): Promise<{ released: ClusterHandle[]; errors: string[] }> {
    const keep = new Set(valid.map(handleId));
    const released: ClusterHandle[] = [];
    const errors: string[] = [];
    for (const h of await this.handles()) {
      if (h.node !== node || keep.has(handleId(h))) continue;
      try {
        if ((await this.release(h, { node })).length) released.push(h);
      } catch (e) {
        errors.push(`${handleId(h)}: ${(e as Error).message}`);
      }
    }
    return { released, errors };
  }

  async handles(): Promise<ClusterHandle[]> {
    return (await this.store.list(`${ROOT}handles/`)).map((kv) => parse<ClusterHandle>(kv));
  }

  /**
   * Releases everything of a node: its attachments, its blocks (with any address left in
   * them), its cursors and its record. Safe when several agents do it at once: each step
   * is conditional, and a lost race just means the work is already done.
   */
  async releaseNode(node: string): Promise<{ blocks: string[]; addresses: number }> {
    checkNodeName(node);
    let addresses = 0;
    // Attachments first, a few per transaction (etcd limits operations per transaction).
    for (;;) {
      const mine = (await this.store.list(`${ROOT}handles/`)).filter((kv) =>
        parse<ClusterHandle>(kv).node === node
      );
      if (mine.length === 0) break;
      for (let i = 0; i < mine.length; i += 20) {
        const chunk = mine.slice(i, i + 20);
        const compare: Compare[] = [];
        const mutations: Mutation[] = [];
        for (const kv of chunk) {
          compare.push({ key: kv.key, modRevision: kv.modRevision });
          mutations.push({ delete: kv.key });
          for (const key of parse<ClusterHandle>(kv).keys ?? []) mutations.push({ delete: key });
        }
        if ((await this.store.commit({ compare, mutations })).ok) addresses += chunk.length;
      }
    }
    const blocks: string[] = [];
    for (const b of (await this.#blocks(this.store)).filter((b) => b.value.node === node)) {
      const c = parseCidr(b.value.cidr);
      const r = await this.store.commit({
        compare: [{ key: b.kv.key, modRevision: b.kv.modRevision }],
        mutations: [{ deletePrefix: K.ipsOf(c) }, { delete: b.kv.key }],
      });
      if (r.ok) blocks.push(b.value.cidr);
    }
    await this.store.commit({
      mutations: [{ deletePrefix: `${ROOT}cursors/${node}/` }, { delete: K.node(node) }],
    });
    return { blocks, addresses };
  }

  // ---------------------------------------------------------------- reservations

  async reserve(ipText: string, note = ""): Promise<void> {
    const ip = parseIp(ipText);
    const text = formatIp(ip.family, ip.value);
    const pools = await this.pools();
    const pool = pools.find((p) => containsIp(parseCidr(p.cidr), ip));
    if (!pool) throw new AddressUnavailableError(`${text} is not in any pool`);
    const block = nthSubnet(parseCidr(pool.cidr), pool.blockPrefix, 0n); // for the prefix only
    const blockOf: Cidr = {
      family: ip.family,
      network: ip.value & ~(cidrSize(block) - 1n),
      prefix: pool.blockPrefix,
    };
    const r = await this.store.commit({
      compare: [{ key: K.ip(blockOf, text), absent: true }],
      mutations: [{
        put: K.reservation(text),
        value: JSON.stringify({ ip: text, note, createdAt: new Date().toISOString() }),
      }],
    });
    if (!r.ok) {
      throw new AddressUnavailableError(`${text} is allocated; release it before reserving it`);
    }
  }

  async unreserve(ipText: string): Promise<boolean> {
    const ip = parseIp(ipText);
    const key = K.reservation(formatIp(ip.family, ip.value));
    const kv = await this.store.get(key);
    if (!kv) return false;
    // Delete-if-unchanged, like every other change (a concurrent unreserve wins alone).
    return (await this.store.commit({
      compare: [{ key, modRevision: kv.modRevision }],
      mutations: [{ delete: key }],
    })).ok;
  }

  async reservations(): Promise<{ ip: string; note: string; createdAt: string }[]> {
    return (await this.store.list(`${ROOT}reservations/`)).map((kv) => JSON.parse(kv.value));
  }

  // ---------------------------------------------------------------- reading

  /** Every allocated address with its owner, optionally of one node or pool. */
  async list(
    filter: { node?: string | undefined; pool?: string | undefined } = {},
  ): Promise<AllocationRow[]> {
    const pools = (await this.pools()).map((p) => ({ p, c: parseCidr(p.cidr) }));
    const poolFilter = filter.pool ? formatCidr(parseCidr(filter.pool)) : undefined;
    const rows: AllocationRow[] = [];
    for (const kv of await this.store.list(`${ROOT}ips/`)) {
      const rec = parse<AddressRecord>(kv);
      const blockKey = kv.key.slice(`${ROOT}ips/`.length, kv.key.lastIndexOf("/"));
      const ip = parseIp(rec.ip);
      const pool = pools.find((x) => containsIp(x.c, ip))?.p.cidr ?? "-";
      if (filter.node && rec.node !== filter.node) continue;
      if (poolFilter && pool !== poolFilter) continue;
      rows.push(
        allocationRow(rec, {
          node: rec.node ?? "-",
          pool,
          block: formatCidr(parseCidrKey(blockKey)),
        }),
      );
    }
    return rows;
  }

  /** Every block with its owner and utilisation. */
  async blocks(): Promise<BlockUsage[]> {
    const out: BlockUsage[] = [];
    for (const b of await this.#blocks(this.store)) {
      const c = parseCidr(b.value.cidr);
      out.push({
        ...b.value,
        used: (await this.store.list(K.ipsOf(c))).length,
        capacity: String(blockCapacity(c)),
      });
    }
    return out;
  }

  /** The nodes with their addresses and blocks, for the routing backends. */
  async peers(): Promise<Peer[]> {
    const view = new PeerView();
    const [nodes, blocks] = await Promise.all([
      this.store.list(NODES_PREFIX),
      this.store.list(BLOCKS_PREFIX),
    ]);
    view.reset(nodes, blocks);
    return view.peers();
  }

  /**
   * The peer set as changes (ipam/peers.ts): the whole set at once, then one batch of
   * per-node changes per burst of watch events. Watches when the store can; lists every
   * `pollMs` otherwise. Ends when the signal aborts.
   */
  watchPeers(opts: WatchPeerOptions): AsyncIterable<PeerChange[]> {
    return watchPeerEvents(this.store, opts);
  }

  /** The consistency check: every rule of ipam/SCHEMA.md, all problems listed. */
  async check(): Promise<CheckReport> {
    const [poolsL, blocksL, ipsL, handlesL, resL, nodesL] = await Promise.all([
      this.pools(),
      this.#blocks(this.store),
      this.store.list(`${ROOT}ips/`),
      this.store.list(`${ROOT}handles/`),
      this.store.list(`${ROOT}reservations/`),
      this.store.list(`${ROOT}nodes/`),
    ]);
    const problems: Problem[] = [];
    const pools = poolsL.map((p) => parseCidr(p.cidr));
    const blocks = new Map(blocksL.map((b) => [b.value.cidr, b.value]));
    const handles = new Map(handlesL.map((kv) => [kv.key, parse<ClusterHandle>(kv)]));
    const reserved = new Set(resL.map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1)));
    const blockCidrs = blocksL.map((b) => ({ key: b.kv.key, c: parseCidr(b.value.cidr) }));
    for (const b of blockCidrs) {
      if (!pools.some((p) => containsCidr(p, b.c))) {
        problems.push({
          kind: "block-outside-pool",
          key: b.key,
          message: `block ${formatCidr(b.c)} lies in no pool`,
        });
      }
    }
    for (let i = 0; i < blockCidrs.length; i++) {
      for (let j = i + 1; j < blockCidrs.length; j++) {
        if (overlaps(blockCidrs[i]!.c, blockCidrs[j]!.c)) {
          problems.push({
            kind: "block-overlap",
            key: blockCidrs[j]!.key,
            message: `blocks ${formatCidr(blockCidrs[i]!.c)} and ${
              formatCidr(blockCidrs[j]!.c)
            } overlap`,
          });
        }
      }
    }
    const records = new Map<string, AddressRecord>();
    for (const kv of ipsL) {
      const rec = parse<AddressRecord>(kv);
      records.set(kv.key, rec);
      const blockText = formatCidr(
        parseCidrKey(kv.key.slice(`${ROOT}ips/`.length, kv.key.lastIndexOf("/"))),
      );
      const h = handles.get(K.handle(rec));
      if (!h || !h.ips.includes(rec.ip)) {
        problems.push({
          kind: "orphan-address",
          key: kv.key,
          message: `${rec.ip} has no live handle (${handleId(rec)})`,
        });
      }
      const block = blocks.get(blockText);
      if (!block || !containsIp(parseCidr(blockText), parseIp(rec.ip))) {
        problems.push({
          kind: "address-outside-block",
          key: kv.key,
          message: `${rec.ip} is not in a claimed block ${blockText}`,
        });
      } else if (rec.node && block.node !== rec.node) {
        problems.push({
          kind: "address-in-foreign-block",
          key: kv.key,
          message: `${rec.ip} of node ${rec.node} is in block ${blockText} of node ${block.node}`,
        });
      }
      if (reserved.has(rec.ip)) {
        problems.push({
          kind: "reserved-allocated",
          key: kv.key,
          message: `${rec.ip} is reserved but allocated`,
        });
      }
    }
    // A live handle's every address needs its own record: a record that is gone, or now
    // names another attachment, means the address can be (or has been) given out twice.
    for (const [key, h] of handles) {
      const keys = h.keys ?? [];
      const ipOf = (k: string) => k.slice(k.lastIndexOf("/") + 1);
      for (const ip of h.ips) {
        if (!keys.some((k) => ipOf(k) === ip)) {
          problems.push({
            kind: "missing-address",
            key,
            message: `${handleId(h)} holds ${ip}, which has no address key in its handle`,
          });
        }
      }
      for (const k of keys) {
        const rec = records.get(k);
        if (!rec) {
          problems.push({
            kind: "missing-address",
            key,
            message: `${handleId(h)} holds ${ipOf(k)}, which has no address record`,
          });
        } else if (!sameAttachment(rec, h)) {
          problems.push({
            kind: "missing-address",
            key,
            message: `${handleId(h)} holds ${ipOf(k)}, whose record names ${
              handleId(rec)
            } instead: the address is held twice`,
          });
        }
      }
    }
    return {
      ok: problems.length === 0,
      counts: {
        pools: poolsL.length,
        blocks: blocksL.length,
        nodes: nodesL.length,
        handles: handlesL.length,
        addresses: ipsL.length,
      },
      problems,
    };
  }
}
