/**
 * The root-namespace guard: a snapshot of what the machine's own network namespace holds
 * (links, addresses, routes, rules, nftables tables, forwarding sysctls, named
 * namespaces) taken before and after a test run. Anything added or removed is a
 * failure: tests build everything inside namespaces they create.
 * @module
 */

import { ipJson } from "../../netns/ip.ts";
import { listNamedNetns } from "../../netns/manage.ts";
import { runCommand } from "../../netns/netns.ts";

export interface RootSnapshot {
  links: string[];
  addresses: string[];
  routes: string[];
  rules: string[];
  nftTables: string[];
  sysctls: string[];
  namedNetns: string[];
}

interface Link {
  ifname: string;
  linkinfo?: { info_kind?: string };
}
interface Addr {
  ifname: string;
  addr_info: { local: string; prefixlen: number }[];
}
interface Route {
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  type?: string;
  protocol?: string;
}
interface Rule {
  priority?: number;
  src?: string;
  dst?: string;
  table?: string;
  fwmark?: string;
}

const routeKey = (r: Route) =>
  [
    r.type ?? "unicast",
    r.dst,
    r.gateway && `via ${r.gateway}`,
    r.dev && `dev ${r.dev}`,
    r.table &&
    `table ${r.table}`,
    r.protocol && `proto ${r.protocol}`,
  ].filter(Boolean).join(" ");

/** Takes a snapshot of the root namespace (the caller must be in it). */
export async function snapshotRoot(): Promise<RootSnapshot> {
  const [links, addrs, r4, r6, rules4, rules6] = await Promise.all([
    ipJson<Link[]>(["link", "show"]),
    ipJson<Addr[]>(["addr", "show"]),
    ipJson<Route[]>(["-4", "route", "show", "table", "all"]),
    ipJson<Route[]>(["-6", "route", "show", "table", "all"]),
    ipJson<Rule[]>(["-4", "rule", "show"]),
    ipJson<Rule[]>(["-6", "rule", "show"]),
  ]);
  const nft = await runCommand(undefined, "nft", { args: ["-j", "list", "tables"] }).catch(() =>
    undefined
  );
  let nftTables: string[] = [];
  if (nft?.success) {
    const doc = JSON.parse(nft.stdout) as {
      nftables: { table?: { family: string; name: string } }[];
    };
    nftTables = doc.nftables.flatMap((e) => e.table ? [`${e.table.family} ${e.table.name}`] : []);
  }
  const sysctls = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"].map((k) => {
    try {
      return `${k}=${Deno.readTextFileSync(`/proc/sys/${k}`).trim()}`;
    } catch {
      return `${k}=?`;
    }
  });
  return {
    links: links.map((l) =>
      `${l.ifname}${l.linkinfo?.info_kind ? ` (${l.linkinfo.info_kind})` : ""}`
    )
      .sort(),
    addresses: addrs.flatMap((a) => a.addr_info.map((i) => `${a.ifname} ${i.local}/${i.prefixlen}`))
      .sort(),
    // Kernel-made IPv6 multicast/link-local routes of existing links are stable; keep all.
    routes: [...r4, ...r6].map(routeKey).sort(),
    rules: [...rules4, ...rules6].map((r) =>
      `${r.priority} from ${r.src ?? "all"} to ${r.dst ?? "all"} fwmark ${r.fwmark ?? "-"} table ${
        r.table ?? "-"
      }`
    ).sort(),
    nftTables: nftTables.sort(),
    sysctls,
    namedNetns: listNamedNetns(),
  };
}

export interface RootDiff {
  kind: keyof RootSnapshot;
  change: "added" | "removed";
  item: string;
}

/**
 * What changed between two snapshots. `ignoreNetns` skips named namespaces it accepts
 * (a pattern or a predicate: other runs' test namespaces on the same machine).
 */
export function diffRoot(
  before: RootSnapshot,
  after: RootSnapshot,
  ignoreNetns?: RegExp | ((name: string) => boolean),
): RootDiff[] {
  const skip = (name: string) =>
    ignoreNetns === undefined
      ? false
      : typeof ignoreNetns === "function"
      ? ignoreNetns(name)
      : ignoreNetns.test(name);
  const out: RootDiff[] = [];
  for (const kind of Object.keys(before) as (keyof RootSnapshot)[]) {
    const b = new Set(before[kind]);
    const a = new Set(after[kind]);
    for (const item of a) {
      if (b.has(item)) continue;
      if (kind === "namedNetns" && skip(item)) continue;
      out.push({ kind, change: "added", item });
    }
    for (const item of b) {
      if (a.has(item)) continue;
      if (kind === "namedNetns" && skip(item)) continue;
      out.push({ kind, change: "removed", item });
    }
  }
  return out;
}
