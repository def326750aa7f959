/**
 * Masquerade: pod traffic leaving the cluster CIDRs is SNATed to the node's address, in
 * an nftables table of ohno's own (`inet ohno`).
 *
 * - Only packets whose source is in a cluster CIDR and whose destination is not are
 *   rewritten; pod-to-pod traffic (same node or across nodes) keeps the pod's address,
 *   and so does multicast. `masquerade` takes the outgoing interface's address: the
 *   node's own address on the underlay.
 * - One table holds everything, so ohno never edits a rule of anyone else's and removal
 *   is one command. {@link applyMasquerade} replaces the whole table in one `nft -f`
 *   transaction (create-if-missing, delete, define): atomic and idempotent, with no window
 *   without rules; conntrack keeps existing connections' translations across it.
 * - IPv4 and IPv6 each get a named interval set; a family without cluster CIDRs gets no
 *   rule.
 *
 * @example
 * ```ts ignore
 * await applyMasquerade({ netns, clusterCIDRs: ["10.244.0.0/16", "fd10:244::/48"] });
 * await removeMasquerade({ netns });   // ohno daemon --cleanup
 * ```
 * @module
 */

import { containsCidr, formatCidr, parseCidr } from "../ipam/addr.ts";
import type { Netns } from "../netns/netns.ts";
import { nftApply, nftDeleteTable, nftListTable, nftTableScript } from "../netns/nft.ts";

/** The nftables table ohno owns (family `inet`). */
const MASQ_TABLE = "ohno";

export interface MasqueradeOptions {
  /** The pod address space: traffic from it to anywhere else is masqueraded. */
  clusterCIDRs: readonly string[];
  /** Run nft in this namespace (the node's); default: the caller's. */
  netns?: Netns | undefined;
  /** Table name (default `ohno`). */
  table?: string;
  /** Randomise source ports fully (`masquerade fully-random`): fewer collisions under load. */
  fullyRandom?: boolean;
}

const TABLE_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

function tableName(t: string | undefined): string {
  const name = t ?? MASQ_TABLE;
  if (!TABLE_RE.test(name)) throw new TypeError(`bad nftables table name ${JSON.stringify(name)}`);
  return name;
}

/** Per address family: its set, the set's element type, its nft protocol, its multicast. */
const FAMILIES = [
  { family: 4, set: "cluster4", type: "ipv4_addr", proto: "ip", multicast: "224.0.0.0/4" },
  { family: 6, set: "cluster6", type: "ipv6_addr", proto: "ip6", multicast: "ff00::/8" },
] as const;

/** Canonical CIDRs of one family, without those another one already covers. */
function family(cidrs: readonly string[], f: 4 | 6): string[] {
  const parsed = cidrs.map((c) => parseCidr(c)).filter((c) => c.family === f);
  const kept = parsed.filter((c, i) =>
    !parsed.some((o, j) => j !== i && containsCidr(o, c) && (o.prefix < c.prefix || j < i))
  );
  return [...new Set(kept.map(formatCidr))].sort();
}

/**
 * The nft script {@link applyMasquerade} runs (pure; exported for tests and for
 * `--dry-run` style output). Throws RangeError naming a CIDR that does not parse.
 */
export function masqueradeScript(opts: Omit<MasqueradeOptions, "netns">): string {
  const table = tableName(opts.table);
  for (const c of opts.clusterCIDRs) {
    try {
      parseCidr(c);
    } catch {
      throw new RangeError(`cluster CIDR ${JSON.stringify(c)} is not a CIDR`);
    }
  }
  const masq = opts.fullyRandom ? "masquerade fully-random" : "masquerade";
  const used = FAMILIES.map((f) => ({ ...f, cidrs: family(opts.clusterCIDRs, f.family) }))
    .filter((f) => f.cidrs.length);
  return nftTableScript("inet", table, [
    ...used.flatMap((f) => [
      `  set ${f.set} {`,
      `    type ${f.type}; flags interval; auto-merge`,
      `    elements = { ${f.cidrs.join(", ")} }`,
      `  }`,
    ]),
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...used.map((f) =>
      `    ${f.proto} saddr @${f.set} ${f.proto} daddr != @${f.set} ${f.proto} daddr != ${f.multicast} ${masq}`
    ),
    `  }`,
  ], "ohno: masquerade pod traffic leaving the cluster CIDRs (generated; replaced as a whole)");
}

/** Installs (or replaces) ohno's masquerade table atomically. */
export async function applyMasquerade(opts: MasqueradeOptions): Promise<void> {
  const script = masqueradeScript(opts);
  await nftApply(`install table inet ${tableName(opts.table)}`, script, opts);
}

/**
 * Removes ohno's table (`ohno daemon --cleanup`). Returns whether there was one.
 * Leaves every other table alone.
 */
export async function removeMasquerade(
  opts: { netns?: Netns | undefined; table?: string } = {},
): Promise<boolean> {
  const table = tableName(opts.table);
  const had = (await readMasquerade(opts)) !== undefined;
  await nftDeleteTable("inet", table, opts);
  return had;
}

/** What ohno's table holds now: the cluster CIDRs per family; undefined when absent. */
export async function readMasquerade(
  opts: { netns?: Netns | undefined; table?: string } = {},
): Promise<{ v4: string[]; v6: string[] } | undefined> {
  const table = tableName(opts.table);
  const items = await nftListTable("inet", table, opts);
  if (!items) return undefined;
  const out = { v4: [] as string[], v6: [] as string[] };
  for (const item of items) {
    const set = item.set as { name?: string; elem?: unknown[] } | undefined;
    if (!set || (set.name !== "cluster4" && set.name !== "cluster6")) continue;
    const list = set.name === "cluster4" ? out.v4 : out.v6;
    for (const e of set.elem ?? []) {
      const p = (e as { prefix?: { addr: string; len: number } }).prefix;
      if (p) list.push(`${p.addr}/${p.len}`);
      else if (typeof e === "string") list.push(e);
    }
  }
  return out;
}
