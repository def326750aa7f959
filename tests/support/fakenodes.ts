/**
 * Many nodes without many agents: writes node records and blocks into a lab's etcd as
 * that many agents starting at once would (each node its own commits: the record, then
 * its block claim), from a process inside the lab namespace; and reads an agent's
 * metrics. For the peer-burst test and `./dev bench scale`.
 * @module
 */

import { type Netns, runCommand } from "../../netns/netns.ts";

const ETCD_MOD = new URL("../../ipam/etcd.ts", import.meta.url).href;

/** The fake node `i`: an on-link next hop of the lab underlay and one block per family. */
export function fakeNode(i: number): { name: string; ips: string[]; blocks: string[] } {
  const host = 100 + (i % 150); // any on-link address will do as a next hop
  return {
    name: `fake${i}`,
    ips: [`172.31.0.${host}`, `fd00:172:31::${host.toString(16)}`],
    // Outside the lab's pools, so they never collide with a real node's claim.
    blocks: [`10.${128 + (i >> 8)}.${i & 255}.0/24`, `fd00:200:${i.toString(16)}::/64`],
  };
}

/**
 * Writes (`put`) or removes (`delete`) fake nodes `from` … `to - 1` through the etcd at
 * `endpoint`, with up to `inFlight` nodes at once; returns when every commit is done.
 */
export async function fakeNodes(
  labNs: Netns,
  endpoint: string,
  op: "put" | "delete",
  from: number,
  to: number,
  inFlight = 64,
): Promise<void> {
  const script = `
    import { EtcdStore } from "${ETCD_MOD}";
    const fake = ${fakeNode.toString()};
    const s = new EtcdStore({ endpoints: [${JSON.stringify(endpoint)}] });
    const key = (c) => "/ohno/v1/blocks/" + c.replace("/", "-");
    const now = new Date().toISOString();
    let next = ${from};
    async function worker() {
      while (next < ${to}) {
        const n = fake(next++);
        if (${JSON.stringify(op)} === "put") {
          await s.commit({ mutations: [{ put: "/ohno/v1/nodes/" + n.name,
            value: JSON.stringify({ name: n.name, ips: n.ips, updatedAt: now }) }] });
          await s.commit({ mutations: n.blocks.map((c) => ({ put: key(c),
            value: JSON.stringify({ cidr: c, pool: "fake", node: n.name, claimedAt: now }) })) });
        } else {
          await s.commit({ mutations: [{ delete: "/ohno/v1/nodes/" + n.name },
            ...n.blocks.map((c) => ({ delete: key(c) }))] });
        }
      }
    }
    await Promise.all(Array.from({ length: ${inFlight} }, worker));
    await s.close();
    Deno.exit(0);
  `;
  const r = await runCommand(labNs, Deno.execPath(), {
    args: ["eval", "--quiet", script],
  });
  if (r.code !== 0) throw new Error(`writing fake nodes failed: ${r.stderr}`);
}

/** An agent's metrics (`name{labels}` → value), read inside its node's namespace. */
export async function agentMetrics(
  ns: Netns,
  address = "127.0.0.1:9753",
): Promise<Map<string, number>> {
  const r = await runCommand(ns, "curl", {
    args: ["-s", "--max-time", "5", `http://${address}/metrics`],
  });
  if (r.code !== 0) throw new Error(`metrics of the agent at ${address}: curl exit ${r.code}`);
  const out = new Map<string, number>();
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}
