/**
 * `ohno ipam ls` on a cluster of 1,000 addresses (10 nodes × 100) next to
 * `etcdctl get --prefix` of the same keys, interleaved in one run, with the ratio; and
 * the same command through the gRPC client (what `ohno ipam` used before the JSON
 * gateway: forced here by a serverName other than the endpoint's host), for scale; and
 * the floors: an empty Deno program, and `ohno version` (Deno, the CLI's modules and
 * commander, which loads Deno's Node layer).
 */
import { ClusterIpam } from "../../ipam/cluster.ts";
import { EtcdHttpStore } from "../../ipam/etcdhttp.ts";
import { PREFIX } from "../../ipam/cluster/keys.ts";
import { runCommand } from "../../netns/netns.ts";
import { startEtcd } from "../support/etcd.ts";
import { OHNO } from "../support/ohno.ts";
import { ms, printTable, ratio, summarize, timeIt } from "./stats.ts";

export async function benchIpamCli(runs = 20, nodes = 10, perNode = 100): Promise<void> {
  await using etcd = await startEtcd();
  const endpoint = etcd.endpoints[0]!;
  {
    await using store = new EtcdHttpStore({ endpoints: [endpoint] });
    const ipam = new ClusterIpam(store);
    await ipam.addPool("10.120.0.0/16");
    await Promise.all(Array.from({ length: nodes }, async (_, n) => {
      await ipam.createNode(`node-${n}`);
      await Promise.all(
        Array.from(
          { length: perNode },
          (_, i) =>
            ipam.allocate({ node: `node-${n}`, containerID: `c-${n}-${i}`, ifname: "eth0" }),
        ),
      );
    }));
    const check = await ipam.check();
    if (!check.ok) throw new Error(`ipam check after the set-up: ${JSON.stringify(check)}`);
  }
  const dir = await Deno.makeTempDir({ prefix: "ohnot-ipamcli-bench-" });
  const grpcConfig = `${dir}/grpc.json`;
  await Deno.writeTextFile(
    grpcConfig,
    JSON.stringify({
      datastore: { type: "etcd", etcd: { endpoints: [endpoint], serverName: "localhost" } },
    }),
  );
  let rows = 0;
  const arms: [string, () => Promise<void>][] = [
    ["ohno ipam ls (JSON gateway)", async () => {
      const r = await runCommand(undefined, OHNO, {
        args: ["ipam", "--etcd-endpoints", endpoint, "ls", "-o", "json"],
      });
      if (r.code !== 0) throw new Error(r.stderr);
      rows = JSON.parse(r.stdout).length;
    }],
    ["etcdctl get --prefix", async () => {
      const r = await runCommand(undefined, "etcdctl", {
        args: ["--endpoints", endpoint, "get", "--prefix", PREFIX.ips.replace(/ips\/$/, "")],
        env: { ETCDCTL_API: "3" },
      });
      if (r.code !== 0) throw new Error(r.stderr);
    }],
    ["floor: deno, empty program", async () => {
      const r = await runCommand(undefined, Deno.execPath(), { args: ["eval", "0"] });
      if (r.code !== 0) throw new Error(r.stderr);
    }],
    ["floor: ohno version (CLI start)", async () => {
      const r = await runCommand(undefined, OHNO, { args: ["version"] });
      if (r.code !== 0) throw new Error(r.stderr);
    }],
    ["ohno ipam ls (gRPC, before)", async () => {
      const r = await runCommand(undefined, OHNO, {
        args: ["ipam", "--config", grpcConfig, "ls", "-o", "json"],
      });
      if (r.code !== 0) throw new Error(r.stderr);
    }],
  ];
  const lat = arms.map(() => [] as number[]);
  try {
    for (let i = -2; i < runs; i++) {
      for (const [k, [, f]] of arms.entries()) {
        const t = await timeIt(f);
        if (i >= 0) lat[k]!.push(t);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  if (rows !== nodes * perNode) throw new Error(`ohno ipam ls listed ${rows} addresses`);
  const s = lat.map((l) => summarize(l));
  const ref = s[1]!;
  printTable(
    `ohno ipam ls on ${rows} addresses vs etcdctl get --prefix, ${runs} runs each, interleaved (ms)`,
    ["command", "p50", "p90", "ratio to etcdctl (p50)"],
    arms.map(([name], k) => [name, ms(s[k]!.p50), ms(s[k]!.p90), ratio(s[k]!.p50, ref.p50)]),
  );
}
