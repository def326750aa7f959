/**
 * `ipMasq: true`: one nftables table per network in the plugin's host namespace,
 * `inet ohno-masq-<network>`, masquerading traffic from the network's subnets to
 * anywhere outside them. Replaced atomically on ADD (one `nft -f`), deleted when the
 * network's last allocation is released.
 * @module
 */

import { runCommand } from "../netns/netns.ts";
import { formatCidr, parseCidr } from "../ipam/addr.ts";
import { fnv1a64 } from "./names.ts";

/** The table name for a network (nft identifiers allow letters, digits, '_' and '-'). */
export function masqTable(network: string): string {
  const safe = network.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 32);
  return `ohno-masq-${safe}-${fnv1a64(network).toString(16).slice(0, 6)}`;
}

/** The nft script that (re)creates the table for these subnets (`10.22.0.0/16`). */
export function masqScript(network: string, subnets: string[]): string {
  const t = masqTable(network);
  const rules = subnets.map((s) => {
    const c = formatCidr(parseCidr(s));
    const fam = c.includes(":") ? "ip6" : "ip";
    return `    ${fam} saddr ${c} ${fam} daddr != ${c} masquerade comment "ohno ${network}"`;
  });
  return [
    `table inet ${t} {}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...rules,
    `  }`,
    `}`,
    "",
  ].join("\n");
}

async function nft(stdinText: string): Promise<void> {
  const r = await runCommand(undefined, "nft", { args: ["-f", "-"], stdinText });
  if (!r.success) throw new Error(`nft failed: ${r.stderr.trim()}`);
}

export async function ensureMasq(network: string, subnets: string[]): Promise<void> {
  await nft(masqScript(network, subnets));
}

export async function removeMasq(network: string): Promise<void> {
  const t = masqTable(network);
  await nft(`table inet ${t} {}\ndelete table inet ${t}\n`);
}
