// deno-lint-ignore-file no-console -- the demo narrates on stdout
/**
 * `deno task demo`: the README's main job. Until the lab lands it wires two pods on one
 * node through dist/ohno exactly as a runtime would, pings, and tears everything down —
 * all inside namespaces it creates (never the machine's own).
 * @module
 */

import { createNamedNetns, deleteNamedNetns, runCommand } from "../netns/mod.ts";
import { callCni, OHNO } from "../tests/support/ohno.ts";

const id = `ohno-demo-${Deno.pid}`;
const names = { host: `${id}-node`, a: `${id}-pod-a`, b: `${id}-pod-b` };
const dir = await Deno.makeTempDir({ prefix: "ohno-demo-" });
const conf = {
  cniVersion: "1.0.0",
  name: "demo",
  type: "ohno",
  ipam: {
    type: "ohno",
    dataDir: dir,
    ranges: [[{ subnet: "10.244.0.0/24" }], [{ subnet: "fd00:244::/64" }]],
  },
};
let failed = false;
try {
  const host = await createNamedNetns(names.host);
  const pods = { a: await createNamedNetns(names.a), b: await createNamedNetns(names.b) };
  console.log(`node namespace ${names.host}; pods ${names.a}, ${names.b}\n`);
  const addrs: Record<string, string[]> = {};
  for (const [k, ns] of Object.entries(pods)) {
    const r = await callCni({
      command: "ADD",
      host,
      containerId: `demo-${k}`,
      netns: ns.path,
      ifname: "eth0",
      config: conf,
      env: { OHNO_LOG_FILE: `${dir}/ohno.log` },
    });
    if (r.code !== 0) throw new Error(`ADD ${k}: ${r.stdout}`);
    addrs[k] = (r.json?.ips as { address: string }[]).map((i) => i.address);
    console.log(`ADD pod-${k}: ${addrs[k]!.join(", ")}  (${OHNO})`);
  }
  console.log("");
  for (const [from, to] of [["a", "b"], ["b", "a"]] as const) {
    for (const addr of addrs[to]!) {
      const ip = addr.split("/")[0]!;
      const p = await runCommand(pods[from], "ping", { args: ["-c", "1", "-W", "2", ip] });
      const ok = p.code === 0;
      failed ||= !ok;
      const rtt = /time=([\d.]+ ms)/.exec(p.stdout)?.[1] ?? "";
      console.log(`ping pod-${from} -> pod-${to} ${ip.padEnd(14)} ${ok ? "ok" : "FAILED"} ${rtt}`);
    }
  }
  for (const k of Object.keys(pods)) {
    const r = await callCni({
      command: "DEL",
      host,
      containerId: `demo-${k}`,
      netns: pods[k as "a" | "b"].path,
      ifname: "eth0",
      config: conf,
      env: { OHNO_LOG_FILE: `${dir}/ohno.log` },
    });
    if (r.code !== 0) throw new Error(`DEL ${k}: ${r.stdout}`);
  }
  console.log(`\nDEL both pods: addresses released, veths gone`);
  console.log(
    failed
      ? "\nDEMO FAILED"
      : "\ndemo ok: two pods on one node reach each other over IPv4 and IPv6",
  );
} finally {
  for (const n of Object.values(names)) await deleteNamedNetns(n);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
Deno.exit(failed ? 1 : 0);
