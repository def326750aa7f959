import * as labs from "../../lab/lab.ts";
import { CniRuntime } from "../../lab/runtime.ts";
import { createNamedNetns, deleteNamedNetns } from "../../netns/manage.ts";
import { Netns } from "../../netns/netns.ts";
import { OHNO } from "../support/ohno.ts";
const name = `perf${Deno.pid % 1000}`;
await labs.up({ name, nodes: 1, ohno: OHNO });
try {
  const s = labs.readState(name);
  const node = s.nodes[0]!;
  using n1 = Netns.named(`ohno-lab-${name}-node1`);
  const list = JSON.parse(Deno.readTextFileSync(`${node.dir}/cni/net.d/10-ohno.conflist`));
  console.log(JSON.stringify(list.plugins[0]));
  const rt = new CniRuntime({ path: [`${node.dir}/cni/bin`], host: n1, env: { OHNO_LOG_LEVEL: "debug" } });
  const add: number[] = [], del: number[] = [];
  for (let i = 0; i < 20; i++) {
    const ns = `ohno-lab-${name}-pod-x${i}`;
    (await createNamedNetns(ns)).close();
    const a = { containerID: `x${i}`, netns: `/var/run/netns/${ns}`, ifname: "eth0" };
    let t = performance.now(); await rt.add(list, a); add.push(performance.now() - t);
    t = performance.now(); await rt.del(list, a); del.push(performance.now() - t);
    await deleteNamedNetns(ns);
  }
  const med = (x: number[]) => x.sort((a, b) => a - b)[x.length >> 1]!.toFixed(1);
  console.log("ADD p50", med(add), "DEL p50", med(del));
  const m = await n1.run(() => 0);
  const r = new Deno.Command("ip", { args: ["netns", "exec", `ohno-lab-${name}-node1`, "curl", "-s", `http://${node.metrics ?? "127.0.0.1:9753"}/metrics`] }).outputSync();
  console.log(new TextDecoder().decode(r.stdout).split("\n").filter((l) => /ipam_request|cni/.test(l) && !l.startsWith("#")).filter((l) => /_sum|_count/.test(l)).join("\n"));
  const logs = [...Deno.readDirSync(node.dir)].map((e) => e.name);
  console.log(logs.join(" "));
  const cl = Deno.readTextFileSync(`${node.dir}/cni.log`).split("\n"); console.log(cl.filter((l) => /timing|done by/.test(l)).slice(-6).join("\n"));
} finally {
  await labs.down(name);
}
