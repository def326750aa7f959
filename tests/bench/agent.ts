/**
 * The node agent in a lab (etcd in the lab namespace, `dist/ohno daemon` per node):
 * - ADD and DEL latency through the agent (cluster IPAM on etcd), p50/p99 over N serial
 *   pods, next to the reference `bridge` + `host-local` in a node namespace of the same
 *   lab, interleaved, with the ratio;
 * - route convergence: from a new node's block claim committed in etcd to its route in
 *   every other node's kernel (seen by `ip monitor`), p50/p99 over 20 joins.
 */
import * as labs from "../../lab/lab.ts";
import { CniRuntime } from "../../lab/runtime.ts";
import { createNamedNetns, deleteNamedNetns } from "../../netns/manage.ts";
import { Netns } from "../../netns/netns.ts";
import { OHNO, REF_CNI_DIR } from "../support/ohno.ts";
import { eachLine, ms, note, printTable, ratio, summarize, timeIt } from "./stats.ts";

export async function benchAgent(pods = 100, joins = 20): Promise<void> {
  const name = `bench${Deno.pid % 10000}`;
  await labs.up({ name, nodes: 2, ohno: OHNO });
  const extra: string[] = [];
  try {
    const s = labs.readState(name);
    using node1 = Netns.named(`ohno-lab-${name}-node1`);
    using node2 = Netns.named(`ohno-lab-${name}-node2`);
    // --- ADD/DEL: ohno through its agent vs bridge + host-local, same lab, same kind of pods.
    const node = s.nodes[0]!;
    const ohnoList = JSON.parse(Deno.readTextFileSync(`${node.dir}/cni/net.d/10-ohno.conflist`));
    const ohnoRt = new CniRuntime({ path: [`${node.dir}/cni/bin`], host: node1 });
    const refList = {
      cniVersion: "1.0.0",
      name: "benchref",
      plugins: [{
        type: "bridge",
        bridge: "refbr0",
        isGateway: true,
        isDefaultGateway: true,
        ipam: {
          type: "host-local",
          dataDir: `${node.dir}/ref-ipam`,
          ranges: [[{ subnet: "10.250.0.0/16" }]],
        },
      }],
    };
    const refRt = new CniRuntime({ path: [REF_CNI_DIR], host: node2 });
    // The same plugin doing the pod's work itself, asking the agent only for addresses.
    const selfRt = new CniRuntime({
      path: [`${node.dir}/cni/bin`],
      host: node1,
      env: { OHNO_POD_WORK: "plugin" },
    });
    const arms = [
      { name: "ohno: the agent does the call", rt: ohnoRt, list: ohnoList, ifname: "eth0" },
      { name: "ohno: the plugin does it", rt: selfRt, list: ohnoList, ifname: "eth2" },
      { name: "bridge + host-local", rt: refRt, list: refList, ifname: "eth1" },
    ];
    const lat = arms.map(() => ({ add: [] as number[], del: [] as number[] }));
    for (let i = -3; i < pods; i++) {
      const netns = `ohno-lab-${name}-pod-b${i + 3}`;
      extra.push(netns);
      (await createNamedNetns(netns)).close();
      for (const [k, arm] of arms.entries()) {
        const a = {
          containerID: `bench${i + 3}-${k}`,
          netns: `/var/run/netns/${netns}`,
          ifname: arm.ifname,
        };
        const t1 = await timeIt(async () => await arm.rt.add(arm.list, a));
        const t2 = await timeIt(() => arm.rt.del(arm.list, a));
        if (i >= 0) { // warm-up otherwise
          lat[k]!.add.push(t1);
          lat[k]!.del.push(t2);
        }
      }
      await deleteNamedNetns(netns);
      extra.pop();
    }
    const sum = lat.map((l) => ({ add: summarize(l.add), del: summarize(l.del) }));
    const ref = sum[2]!;
    printTable(
      `ADD/DEL through the node agent (etcd IPAM), ${pods} serial pods each, interleaved (ms)`,
      ["plugin", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "ADD ratio", "DEL ratio"],
      arms.map((arm, k) => [
        arm.name,
        ms(sum[k]!.add.p50),
        ms(sum[k]!.add.p99),
        ms(sum[k]!.del.p50),
        ms(sum[k]!.del.p99),
        ratio(sum[k]!.add.p50, ref.add.p50),
        ratio(sum[k]!.del.p50, ref.del.p50),
      ]),
    );

    // --- Pods per second, 8 at a time, each arm in turn.
    const width = 8, burst = 48;
    const perSec: { add: number; del: number }[] = [];
    for (const [k, arm] of arms.entries()) {
      const nss = Array.from({ length: burst }, (_, j) => `ohno-lab-${name}-pod-c${k}-${j}`);
      for (const ns of nss) {
        extra.push(ns);
        (await createNamedNetns(ns)).close();
      }
      const att = (j: number) => ({
        containerID: `conc${k}-${j}`,
        netns: `/var/run/netns/${nss[j]}`,
        ifname: arm.ifname,
      });
      const wave = async (fn: (j: number) => Promise<unknown>) => {
        let next = 0;
        const t = await timeIt(() =>
          Promise.all(Array.from({ length: width }, async () => {
            while (next < burst) await fn(next++);
          }))
        );
        return burst / t * 1000;
      };
      const add = await wave((j) => arm.rt.add(arm.list, att(j)));
      const del = await wave((j) => arm.rt.del(arm.list, att(j)));
      perSec.push({ add, del });
      for (const ns of nss) await deleteNamedNetns(ns);
      extra.splice(extra.length - nss.length);
    }
    printTable(
      `pods per second through the node agent at concurrency ${width} (${burst} pods)`,
      ["plugin", "ADD/s", "DEL/s", "ADD ratio", "DEL ratio"],
      arms.map((arm, k) => [
        arm.name,
        perSec[k]!.add.toFixed(1),
        perSec[k]!.del.toFixed(1),
        ratio(perSec[k]!.add, perSec[2]!.add),
        ratio(perSec[k]!.del, perSec[2]!.del),
      ]),
    );

    // --- Route convergence: a joining node's block claim → its route on every other node.
    const monitors = [node1, node2].map((ns) =>
      ns.spawn("ip", { args: ["-o", "monitor", "route"], stdout: "piped", stderr: "null" })
    );
    const seen = new Map<string, number[]>(); // block → times it appeared, one per node
    for (const m of monitors) {
      eachLine(m, (l, at) => {
        const mm = /^(\S+\/\d+) via .* proto 111/.exec(l);
        if (mm && !l.startsWith("Deleted")) seen.set(mm[1]!, [...(seen.get(mm[1]!) ?? []), at]);
      });
    }
    // The joiner runs in node1 (where etcd is reachable) and claims as a new node would.
    const script = `
      import { ClusterIpam } from "${new URL("../../ipam/cluster.ts", import.meta.url).href}";
      import { EtcdStore } from "${new URL("../../ipam/etcd.ts", import.meta.url).href}";
      const store = new EtcdStore({ endpoints: ["${s.etcd.endpoint}"] });
      const ipam = new ClusterIpam(store);
      const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
      for (let i = 0; i < ${joins}; i++) {
        const node = "join" + i;
        await ipam.registerNode(node, { ips: ["172.31.0." + (100 + i)] });
        const blocks = await ipam.claimBlocks(node);
        console.log(JSON.stringify({ t: Date.now(), block: blocks.find((b) => !b.cidr.includes(":")).cidr }));
        await lines.read(); // wait for the bench to see the routes
      }
      await store.close();
    `;
    const joiner = node1.spawn(Deno.execPath(), {
      args: ["eval", "--quiet", "--no-prompt", "--cached-only", script],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    });
    const out = joiner.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const w = joiner.stdin.getWriter();
    const conv: number[] = [];
    let pending = "";
    for (let i = 0; i < joins; i++) {
      while (!pending.includes("\n")) {
        const { value, done } = await out.read();
        if (done) throw new Error("the joiner stopped");
        pending += value;
      }
      const line = pending.slice(0, pending.indexOf("\n"));
      pending = pending.slice(pending.indexOf("\n") + 1);
      const { t, block } = JSON.parse(line) as { t: number; block: string };
      const until = Date.now() + 10_000;
      while ((seen.get(block)?.length ?? 0) < 2 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 2));
      }
      const times = seen.get(block) ?? [];
      if (times.length < 2) throw new Error(`route to ${block} did not reach both nodes`);
      conv.push(Math.max(...times) - t);
      await w.write(new TextEncoder().encode("next\n"));
    }
    await w.close();
    await joiner.status;
    for (const m of monitors) m.kill("SIGTERM");
    const c = summarize(conv);
    printTable(
      `route convergence: block claim in etcd → route on every other node, ${joins} joins (ms)`,
      [
        "p50",
        "p90",
        "p99",
      ],
      [[ms(c.p50), ms(c.p90), ms(c.p99)]],
    );
    note(
      "(etcd watch → RouteSync → one `ip -batch`; both nodes' kernels, seen by `ip monitor route`)",
    );
  } finally {
    for (const n of extra) await deleteNamedNetns(n).catch(() => {});
    await labs.down(name);
  }
}
