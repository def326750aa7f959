/**
 * The embedded IPAM: host-local shaped ranges, allocated in-process from a Store (the
 * local file store on a node with no agent).
 *
 * Configuration has host-local's shape, so a user switches by changing one word:
 * `ranges` is a list of range sets (one per family), each a list of
 * `{subnet, rangeStart?, rangeEnd?, gateway?}`. An attachment gets one address from
 * every range set. Defaults as host-local: `rangeStart` = network + 1, `rangeEnd` = last
 * address (IPv4: broadcast − 1), `gateway` = network + 1; the network, broadcast and
 * gateway addresses are never handed out.
 *
 * Keys (under `/ohno/v1/networks/<network>/`):
 * - `ips/<ip>`: {@link AddressRecord}
 * - `handles/<containerID>/<ifname>`: {@link HandleRecord}
 * - `cursor/<set>`: the last address handed out from range set `<set>` (round robin)
 * @module
 */

import {
  type Cidr,
  containsIp,
  type Family,
  formatCidr,
  formatIp,
  type Ip,
  isIp,
  lastAddress,
  overlaps,
  parseCidr,
  parseIp,
} from "./addr.ts";
import { AddressUnavailableError, IpamConfigError, IpamExhaustedError } from "./errors.ts";
import { type AddressRange, capacity, pickNext, rangeOf } from "./pick.ts";
import {
  type AddressRecord,
  type AllocationRow,
  allocationRow,
  type Attachment,
  checkAttachment,
  handleId,
  type HandleRecord,
} from "./records.ts";
import { atomically, type KV, type Store, StoreDataError, type StoreReader } from "./store.ts";
import { AttachmentWrites, refuseHeld, releaseAllBut, releaseTxn } from "./attachments.ts";

/** A range with its defaults applied. */
export interface Range extends AddressRange {
  /** The gateway pods of this range use (also excluded from allocation). */
  gateway: bigint;
}

export type RangeSet = Range[];

/** An address given to an attachment. */
export interface AllocatedIp {
  family: Family;
  /** The address with the subnet's prefix length, e.g. `10.22.0.5/16`. */
  address: string;
  /** The address alone. */
  ip: string;
  gateway: string;
  /** Which range set it came from. */
  rangeSet: number;
}

export interface AddressRequest extends Attachment {
  /** Static addresses wanted (`IP=` in CNI_ARGS, the `ips` capability): one per family. */
  requestedIPs?: string[];
  podNamespace?: string;
  podName?: string;
}

/**
 * Parses and checks `ranges` from a config. `field` is the config path used in error
 * messages (e.g. `ipam.ranges`). Throws {@link IpamConfigError}.
 */
export function parseRangeSets(specs: unknown, field = "ipam.ranges"): RangeSet[] {
  if (!Array.isArray(specs) || specs.length === 0) {
    throw new IpamConfigError(field, "must be a non-empty list of range sets");
  }
  const sets = specs.map((set, i) => {
    const f = `${field}[${i}]`;
    if (!Array.isArray(set) || set.length === 0) {
      throw new IpamConfigError(f, "must be a non-empty list of ranges");
    }
    const ranges = set.map((spec, j) => parseRange(spec, `${f}[${j}]`));
    const fam = ranges[0]!.family;
    ranges.forEach((r, j) => {
      if (r.family !== fam) {
        throw new IpamConfigError(`${f}[${j}].subnet`, "mixes IPv4 and IPv6 in one range set");
      }
    });
    return ranges;
  });
  // No two ranges anywhere may overlap.
  const all = sets.flatMap((s, i) => s.map((r, j) => ({ r, at: `${field}[${i}][${j}]` })));
  for (let a = 0; a < all.length; a++) {
    for (let b = a + 1; b < all.length; b++) {
      const x = all[a]!, y = all[b]!;
      if (x.r.family === y.r.family && x.r.first <= y.r.last && y.r.first <= x.r.last) {
        throw new IpamConfigError(y.at, `overlaps ${x.at}`);
      }
    }
  }
  return sets;
}

/**
 * Blocks a pod subnet may not touch: the kernel will not put these addresses on a bridge
 * or a pod, or gives them a meaning of their own (a subnet over them fails half-way
 * through ADD, or worse, succeeds).
 */
const SPECIAL: Record<Family, { cidr: string; what: string }[]> = {
  4: [
    { cidr: "0.0.0.0/8", what: "'this network'" },
    { cidr: "127.0.0.0/8", what: "loopback" },
    { cidr: "224.0.0.0/4", what: "multicast" },
    { cidr: "240.0.0.0/4", what: "reserved, with the broadcast address" },
  ],
  6: [
    { cidr: "::/128", what: "the unspecified address" },
    { cidr: "::1/128", what: "loopback" },
    { cidr: "::ffff:0:0/96", what: "IPv4-mapped" },
    { cidr: "fe80::/10", what: "link-local" },
    { cidr: "ff00::/8", what: "multicast" },
  ],
};

/** A range's `subnet`: a CIDR pods can use, with room for at least 4 addresses. */
function parseSubnet(s: Record<string, unknown>, field: string): Cidr {
  if (typeof s.subnet !== "string") {
    throw new IpamConfigError(`${field}.subnet`, "is required (a CIDR such as 10.22.0.0/16)");
  }
  let subnet: Cidr;
  try {
    subnet = parseCidr(s.subnet);
  } catch (e) {
    throw new IpamConfigError(`${field}.subnet`, (e as Error).message);
  }
  if (subnet.prefix === 0) {
    throw new IpamConfigError(
      `${field}.subnet`,
      `${formatCidr(subnet)} covers every address (the host's own and its default route's)`,
    );
  }
  const special = SPECIAL[subnet.family].find((b) => overlaps(subnet, parseCidr(b.cidr)));
  if (special) {
    throw new IpamConfigError(
      `${field}.subnet`,
      `${formatCidr(subnet)} overlaps ${special.cidr} (${special.what}), which pods cannot use`,
    );
  }
  const hostBits = (subnet.family === 4 ? 32 : 128) - subnet.prefix;
  if (hostBits < 2) {
    throw new IpamConfigError(
      `${field}.subnet`,
      `${formatCidr(subnet)} is too small to allocate from (needs at least 4 addresses)`,
    );
  }
  return subnet;
}

function parseRange(spec: unknown, field: string): Range {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    throw new IpamConfigError(field, "must be an object with a subnet");
  }
  const s = spec as Record<string, unknown>;
  const subnet = parseSubnet(s, field);
  const addrIn = (key: string): bigint | undefined => {
    const v = s[key];
    if (v === undefined || v === "") return undefined;
    if (typeof v !== "string") throw new IpamConfigError(`${field}.${key}`, "must be a string");
    let ip;
    try {
      ip = parseIp(v);
    } catch (e) {
      throw new IpamConfigError(`${field}.${key}`, (e as Error).message);
    }
    if (!containsIp(subnet, ip)) {
      throw new IpamConfigError(`${field}.${key}`, `${v} is not in ${formatCidr(subnet)}`);
    }
    return ip.value;
  };
  const network = subnet.network;
  const top = lastAddress(subnet);
  const first = addrIn("rangeStart") ?? network + 1n;
  const last = addrIn("rangeEnd") ?? (subnet.family === 4 ? top - 1n : top);
  const gateway = addrIn("gateway") ?? network + 1n;
  if (first > last) {
    throw new IpamConfigError(
      `${field}.rangeStart`,
      `${formatIp(subnet.family, first)} is after rangeEnd ${formatIp(subnet.family, last)}`,
    );
  }
  if (first === network || (subnet.family === 4 && last === top)) {
    throw new IpamConfigError(
      field,
      "the range may not include the network or broadcast address",
    );
  }
  return { family: subnet.family, subnet, first, last, gateway, exclude: new Set([gateway]) };
}

/** Every embedded allocation in a store, of every network, as `ohno ipam ls` rows. */
export async function embeddedAllocations(store: Store): Promise<AllocationRow[]> {
  const rows: AllocationRow[] = [];
  for (const kv of await store.list(NETWORKS)) {
    const m = /^([^/]+)\/ips\//.exec(kv.key.slice(NETWORKS.length));
    if (!m) continue;
    const rec = decodeAddress(store, kv);
    rows.push(allocationRow(rec, { node: "(this host)", pool: `network ${m[1]}`, block: "-" }));
  }
  return rows;
}

const NETWORKS = "/ohno/v1/networks/";

// Decoders of what the embedded allocator reads back: anything else than what the key
// promises is a StoreDataError naming the file, the key and the value (CNI code 5).

function decodeObject(store: Store, kv: KV): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(kv.value);
  } catch (e) {
    throw new StoreDataError(store, kv.key, `not JSON (${(e as Error).message})`, kv.value);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new StoreDataError(store, kv.key, "not a JSON object", kv.value);
  }
  return v as Record<string, unknown>;
}

function attachmentOf(store: Store, kv: KV, o: Record<string, unknown>): void {
  for (const f of ["containerID", "ifname"]) {
    if (typeof o[f] !== "string" || o[f] === "") {
      throw new StoreDataError(store, kv.key, `${f} is missing or not a string`, kv.value);
    }
  }
}

function decodeHandle(store: Store, kv: KV): HandleRecord {
  const o = decodeObject(store, kv);
  attachmentOf(store, kv, o);
  if (!Array.isArray(o.ips) || !o.ips.every((ip) => typeof ip === "string" && isIp(ip))) {
    throw new StoreDataError(store, kv.key, "ips is not a list of addresses", kv.value);
  }
  return o as unknown as HandleRecord;
}

function decodeAddress(store: Store, kv: KV): AddressRecord {
  const o = decodeObject(store, kv);
  attachmentOf(store, kv, o);
  if (typeof o.ip !== "string" || !isIp(o.ip)) {
    throw new StoreDataError(store, kv.key, "ip is not an address", kv.value);
  }
  return o as unknown as AddressRecord;
}

/** The address an `ips/<ip>` key is for. */
function ipOfKey(store: Store, kv: KV): Ip {
  const text = kv.key.slice(kv.key.lastIndexOf("/") + 1);
  try {
    return parseIp(text);
  } catch {
    throw new StoreDataError(store, kv.key, `${JSON.stringify(text)} is not an IP address`);
  }
}

/** A `cursor/<set>` value: an address (of `family`, when given). */
function decodeCursor(store: Store, kv: KV, family?: Family): bigint {
  let ip: Ip;
  try {
    ip = parseIp(kv.value);
  } catch {
    throw new StoreDataError(store, kv.key, "not an IP address", kv.value);
  }
  if (family !== undefined && ip.family !== family) {
    throw new StoreDataError(store, kv.key, `not an IPv${family} address`, kv.value);
  }
  return ip.value;
}

/** What `ohno ipam check` finds wrong in the embedded allocations. */
export interface EmbeddedProblem {
  kind:
    | "bad-entry"
    | "orphan-address"
    | "missing-address"
    | "duplicate-handle"
    | "handle-mismatch";
  key: string;
  message: string;
}

export interface EmbeddedCheck {
  networks: number;
  handles: number;
  addresses: number;
  problems: EmbeddedProblem[];
}

/**
 * The consistency check of the embedded allocations (every network): each entry decodes;
 * each address record belongs to a handle of its network that lists it; each address a
 * handle lists has a record of that handle; no address is listed by two handles; a
 * handle's key names the attachment of its record.
 */
export async function checkEmbedded(store: Store): Promise<EmbeddedCheck> {
  const problems: EmbeddedProblem[] = [];
  const nets = new Map<string, EmbeddedNet>();
  let handles = 0, addresses = 0;
  for (const kv of await store.list(NETWORKS)) {
    const m = /^([^/]+)\/(ips|handles|cursor)\/(.+)$/.exec(kv.key.slice(NETWORKS.length));
    if (!m) {
      problems.push({ kind: "bad-entry", key: kv.key, message: "not a key of the embedded IPAM" });
      continue;
    }
    let net = nets.get(m[1]!);
    if (!net) nets.set(m[1]!, net = { ips: new Map(), handles: new Map() });
    if (m[2] === "ips") addresses++;
    else if (m[2] === "handles") handles++;
    try {
      problems.push(...readEntry(store, kv, m[2]!, m[3]!, net));
    } catch (e) {
      if (!(e instanceof StoreDataError)) throw e;
      problems.push({ kind: "bad-entry", key: kv.key, message: e.problem });
    }
  }
  for (const [name, net] of nets) problems.push(...netProblems(name, net));
  return { networks: nets.size, handles, addresses, problems };
}

/** One network's decoded entries: address records by address, handles by ID. */
interface EmbeddedNet {
  ips: Map<string, { key: string; rec: AddressRecord }>;
  handles: Map<string, { key: string; rec: HandleRecord }>;
}

/** Decodes one entry (of `kind`, key suffix `rest`) into `net`; the problems it shows. */
function readEntry(
  store: Store,
  kv: KV,
  kind: string,
  rest: string,
  net: EmbeddedNet,
): EmbeddedProblem[] {
  if (kind === "ips") {
    const ip = ipOfKey(store, kv);
    const rec = decodeAddress(store, kv);
    const text = formatIp(ip.family, ip.value);
    net.ips.set(text, { key: kv.key, rec });
    if (rec.ip === text) return [];
    return [{
      kind: "bad-entry",
      key: kv.key,
      message: `the record of ${text} says it is ${rec.ip}`,
    }];
  }
  if (kind === "handles") {
    const rec = decodeHandle(store, kv);
    net.handles.set(rest, { key: kv.key, rec });
    if (handleId(rec) === rest) return [];
    return [{
      kind: "handle-mismatch",
      key: kv.key,
      message: `handle ${rest} holds the record of ${handleId(rec)}`,
    }];
  }
  decodeCursor(store, kv);
  return [];
}

/** A network's handles and address records against each other. */
function netProblems(name: string, net: EmbeddedNet): EmbeddedProblem[] {
  const problems: EmbeddedProblem[] = [];
  const holders = new Map<string, string[]>();
  for (const [id, h] of net.handles) {
    for (const ip of h.rec.ips) {
      const a = parseIp(ip);
      const text = formatIp(a.family, a.value);
      holders.set(text, [...holders.get(text) ?? [], id]);
    }
  }
  for (const [ip, ids] of holders) {
    if (ids.length > 1) {
      problems.push({
        kind: "duplicate-handle",
        key: net.handles.get(ids.at(-1)!)!.key,
        message: `${ip} in network ${name} is held by ${ids.length} handles: ${ids.join(", ")}`,
      });
      continue;
    }
    const id = ids[0]!;
    const a = net.ips.get(ip);
    if (!a || handleId(a.rec) !== id) {
      problems.push({
        kind: "missing-address",
        key: net.handles.get(id)!.key,
        message: `${id} holds ${ip} in network ${name}, ${
          a ? `whose record belongs to ${handleId(a.rec)}` : "which has no address record"
        }`,
      });
    }
  }
  for (const [ip, a] of net.ips) {
    const h = net.handles.get(handleId(a.rec));
    if (!h || !(holders.get(ip) ?? []).includes(handleId(a.rec))) {
      problems.push({
        kind: "orphan-address",
        key: a.key,
        message: `${ip} in network ${name} has no live handle (${handleId(a.rec)})`,
      });
    }
  }
  return problems;
}

/** Allocation of one network's addresses from its range sets, in a Store. */
export class RangeAllocator {
  readonly #prefix: string;

  constructor(
    readonly store: Store,
    readonly network: string,
    readonly sets: RangeSet[],
  ) {
    this.#prefix = `${NETWORKS}${network}/`;
  }

  #ipKey(ip: string) {
    return `${this.#prefix}ips/${ip}`;
  }
  #handleKey(a: Attachment) {
    return `${this.#prefix}handles/${handleId(a)}`;
  }
  #cursorKey(set: number) {
    return `${this.#prefix}cursor/${set}`;
  }

  /** Addresses for one attachment: one per range set. */
  allocate(req: AddressRequest): Promise<AllocatedIp[]> {
    checkAttachment(req);
    const wanted = this.#matchRequested(req.requestedIPs ?? []);
    return atomically(this.store, async (r) => {
      refuseHeld(await r.get(this.#handleKey(req)), req, (kv) => decodeHandle(this.store, kv));
      const used = await this.#used(r);
      const w = new AttachmentWrites(this.#handleKey(req), req, podOf(req));
      const out: AllocatedIp[] = [];
      for (let i = 0; i < this.sets.length; i++) {
        const { ip, range } = await this.#choose(r, i, wanted.get(i), used, w);
        const text = formatIp(range.family, ip);
        w.address(this.#ipKey(text), text);
        out.push({
          family: range.family,
          address: `${text}/${range.subnet.prefix}`,
          ip: text,
          gateway: formatIp(range.family, range.gateway),
          rangeSet: i,
        });
      }
      return { txn: w.txn(), result: out };
    }, { what: `allocation in network ${this.network}` });
  }

  /**
   * The address range set `i` gives: the requested one if free, else the next after the
   * set's cursor (whose move is added to `w`).
   */
  async #choose(
    r: StoreReader,
    i: number,
    want: bigint | undefined,
    used: Record<Family, Set<bigint>>,
    w: AttachmentWrites,
  ): Promise<{ ip: bigint; range: Range }> {
    const set = this.sets[i]!;
    if (want !== undefined) {
      const range = set[rangeOf(set, set[0]!.family, want)]!;
      if (used[range.family].has(want)) {
        throw new AddressUnavailableError(
          `requested address ${formatIp(range.family, want)} is already in use`,
        );
      }
      return { ip: want, range };
    }
    const cursorKv = await r.get(this.#cursorKey(i));
    const cursor = cursorKv ? decodeCursor(this.store, cursorKv, set[0]!.family) : undefined;
    const pick = pickNext(set, used[set[0]!.family], cursor);
    if (!pick) {
      throw new IpamExhaustedError(
        `no free address in network ${this.network}, range set ${i} (${
          set.map(describeRange).join(", ")
        })`,
      );
    }
    const range = set[pick.range]!;
    w.mutations.push({ put: this.#cursorKey(i), value: formatIp(range.family, pick.ip) });
    return { ip: pick.ip, range };
  }

  /** The addresses an attachment holds, or undefined. */
  async get(a: Attachment): Promise<AllocatedIp[] | undefined> {
    checkAttachment(a);
    const kv = await this.store.get(this.#handleKey(a));
    if (!kv) return undefined;
    const h = decodeHandle(this.store, kv);
    return h.ips.map((ip) => this.#describe(ip)).filter((x): x is AllocatedIp => !!x);
  }

  /** Releases an attachment's addresses; returns them (empty when it held none). */
  release(a: Attachment): Promise<string[]> {
    checkAttachment(a);
    return atomically(this.store, async (r) => {
      const kv = await r.get(this.#handleKey(a));
      if (!kv) return { result: [] };
      const h = decodeHandle(this.store, kv);
      const keys = h.ips.map((ip) => this.#ipKey(ip));
      const txn = await releaseTxn(r, kv, a, keys, (x) => decodeAddress(this.store, x));
      return { txn, result: h.ips };
    }, { what: `release in network ${this.network}` });
  }

  /** Every attachment holding addresses in this network. */
  async list(): Promise<HandleRecord[]> {
    const kvs = await this.store.list(`${this.#prefix}handles/`);
    return kvs.map((kv) => decodeHandle(this.store, kv));
  }

  /**
   * Releases every attachment not in `valid`. Goes on past errors and reports them all.
   */
  async gc(valid: Attachment[]): Promise<{ released: HandleRecord[]; errors: string[] }> {
    const keep = new Set(valid.map(handleId));
    const { released, errors } = await releaseAllBut(await this.list(), valid, async (h) => {
      await this.release(h);
      return true;
    });
    // Address records whose handle vanished (a crash between writes cannot cause this,
    // since one commit writes both, but an operator's edit can): release them too.
    const handles = new Set((await this.list()).map(handleId));
    for (const kv of await this.store.list(`${this.#prefix}ips/`)) {
      const rec = decodeAddress(this.store, kv);
      if (handles.has(handleId(rec)) || keep.has(handleId(rec))) continue;
      const r = await this.store.commit({
        compare: [{ key: kv.key, modRevision: kv.modRevision }],
        mutations: [{ delete: kv.key }],
      });
      if (r.ok) released.push({ ...rec, ips: [rec.ip] });
    }
    return { released, errors };
  }

  /**
   * Free addresses left in each range set (for STATUS: can ADD be served?). Reads what
   * ADD reads (addresses, cursors), so a bad entry there throws {@link StoreDataError}.
   */
  async free(): Promise<bigint[]> {
    const used = await this.#used(this.store);
    for (let i = 0; i < this.sets.length; i++) {
      const kv = await this.store.get(this.#cursorKey(i));
      if (kv) decodeCursor(this.store, kv, this.sets[i]![0]!.family);
    }
    return this.sets.map((set) => {
      let n = capacity(set);
      for (const u of used[set[0]!.family]) {
        if (rangeOf(set, set[0]!.family, u) >= 0 && !set.some((r) => r.exclude.has(u))) n--;
      }
      return n;
    });
  }

  /** Addresses in use, by family. */
  async #used(r: StoreReader): Promise<Record<Family, Set<bigint>>> {
    const used: Record<Family, Set<bigint>> = { 4: new Set(), 6: new Set() };
    for (const kv of await r.list(`${this.#prefix}ips/`)) {
      const ip = ipOfKey(this.store, kv);
      used[ip.family].add(ip.value);
    }
    return used;
  }

  /** Maps requested addresses to range sets; throws naming the address that fits none. */
  #matchRequested(requested: string[]): Map<number, bigint> {
    const out = new Map<number, bigint>();
    for (const text of requested) {
      let ip;
      try {
        ip = parseIp(text.replace(/\/\d+$/, ""));
      } catch {
        throw new AddressUnavailableError(`requested address ${JSON.stringify(text)} is not an IP`);
      }
      const i = this.sets.findIndex((set) => rangeOf(set, ip.family, ip.value) >= 0);
      if (i < 0) {
        throw new AddressUnavailableError(
          `requested address ${text} is not in any range of network ${this.network}`,
        );
      }
      const set = this.sets[i]!;
      if (set.some((r) => r.gateway === ip.value)) {
        throw new AddressUnavailableError(`requested address ${text} is the gateway`);
      }
      if (out.has(i)) {
        throw new AddressUnavailableError(
          `two addresses requested from range set ${i} of network ${this.network}`,
        );
      }
      out.set(i, ip.value);
    }
    return out;
  }

  #describe(ipText: string): AllocatedIp | undefined {
    const ip = parseIp(ipText);
    for (let i = 0; i < this.sets.length; i++) {
      const set = this.sets[i]!;
      const at = set.findIndex((r) => containsIp(r.subnet, ip));
      if (at < 0) continue;
      const range = set[at]!;
      return {
        family: ip.family,
        address: `${ipText}/${range.subnet.prefix}`,
        ip: ipText,
        gateway: formatIp(range.family, range.gateway),
        rangeSet: i,
      };
    }
    return undefined;
  }
}

function describeRange(r: Range): string {
  return `${formatIp(r.family, r.first)}-${formatIp(r.family, r.last)} in ${formatCidr(r.subnet)}`;
}

function podOf(req: AddressRequest): { podNamespace?: string; podName?: string } {
  return {
    ...(req.podNamespace ? { podNamespace: req.podNamespace } : {}),
    ...(req.podName ? { podName: req.podName } : {}),
  };
}
