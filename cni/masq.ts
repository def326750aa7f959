/**
 * `ipMasq: true`: one nftables table per network in the plugin's host namespace,
 * `inet ohno-masq-<network>`, masquerading traffic from the network's subnets to
 * anywhere outside them. Replaced atomically on ADD (one `nft -f`), deleted when the
 * network's last allocation is released.
 * @module
 */

import { nftApply, nftDeleteTable, nftTableScript } from "../netns/nft.ts";
import { formatCidr, parseCidr } from "../ipam/addr.ts";
import { fnv1a64 } from "./names.ts";

/** The table name for a network (nft identifiers allow letters, digits, '_' and '-'). */
function masqTable(network: string): string {
  const safe = network.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 32);
  return `ohno-masq-${safe}-${fnv1a64(network).toString(16).slice(0, 6)}`;
}

export async function ensureMasq(network: string, subnets: string[]): Promise<void> {
  const t = masqTable(network);
  const rules = subnets.map((s) => {
    const c = formatCidr(parseCidr(s));
    const fam = c.includes(":") ? "ip6" : "ip";
    return `    ${fam} saddr ${c} ${fam} daddr != ${c} masquerade comment "ohno ${network}"`;
  });
  const script = nftTableScript("inet", t, [
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...rules,
    `  }`,
  ]);
  await nftApply(`install table inet ${t}`, script);
}

export async function removeMasq(network: string): Promise<void> {
  await nftDeleteTable("inet", masqTable(network));
}
