/**
 * `ohno lab demo`: ohno's main job, shown end to end. A 2-node lab (etcd, an agent per
 * node), two pods per node added as a runtime adds them, same-node and cross-node pings
 * over IPv4 and IPv6, a pod reaching a host outside the cluster (masqueraded), the
 * address table, a summary — then everything is taken down.
 * @module
 */

import { Netns, runCommand } from "../netns/netns.ts";
import * as lab from "./lab.ts";

export interface DemoOptions {
  name: string;
  ohno: string;
  say: (line: string) => void;
  /** The agents' backend (default host-gw, as `./dev demo` runs it). */
  backend?: "host-gw" | "vxlan";
  /** `routed`: the two nodes in different subnets behind a router (default flat). */
  underlay?: "flat" | "routed";
}

/** Runs the demo; returns whether every check passed. Always takes the lab down. */
export async function demo(o: DemoOptions): Promise<boolean> {
  const say = o.say;
  const checks: [string, boolean][] = [];
  const t0 = performance.now();
  try {
    const backend = o.backend ?? "host-gw";
    const underlay = o.underlay ?? "flat";
    say(
      `== 1. a cluster of 2 nodes in network namespaces (lab "${o.name}", ${underlay} underlay, backend ${backend})`,
    );
    await lab.up({
      name: o.name,
      nodes: 2,
      ohno: o.ohno,
      underlay,
      ...(backend !== "host-gw" ? { extraConfig: { backend } } : {}),
      say: (l) => say(`   ${l}`),
    });

    say(`\n== 2. four pods, added exactly as a container runtime adds them`);
    const pods: [string, string][] = [["node1", "web-1"], ["node1", "web-2"], ["node2", "db-1"], [
      "node2",
      "db-2",
    ]];
    for (const [node, pod] of pods) {
      const p = await lab.podAdd(o.name, node, pod);
      say(`   ${pod.padEnd(6)} on ${node}: ${p.ips.join(", ")}`);
    }

    say(
      `\n== 3. pings: same node (through the bridge), across nodes (${
        backend === "vxlan" ? "VXLAN" : "host-gw routes"
      })`,
    );
    const pairs: [string, string, string][] = [
      ["web-1", "web-2", "same node"],
      ["db-1", "db-2", "same node"],
      ["web-1", "db-1", "across nodes"],
      ["db-2", "web-2", "across nodes"],
    ];
    for (const [a, b, what] of pairs) {
      for (const r of await lab.ping(o.name, a, b)) {
        checks.push([`${a} -> ${b} ${r.ip}`, r.ok]);
        say(
          `   ${a.padEnd(6)} -> ${b.padEnd(6)} ${r.ip.padEnd(22)} ${r.ok ? "ok" : "FAILED"} ${
            r.rtt ?? ""
          }  (${what})`,
        );
      }
    }

    say(`\n== 4. a pod reaches a host outside the cluster; the host sees the node's address`);
    for (const r of await lab.ping(o.name, "web-1", "outside")) {
      checks.push([`web-1 -> outside ${r.ip}`, r.ok]);
      say(`   web-1  -> outside ${r.ip.padEnd(22)} ${r.ok ? "ok" : "FAILED"} ${r.rtt ?? ""}`);
    }
    const seen = await sourceSeenByOutside(o.name, "web-1");
    const node1 = lab.readState(o.name).nodes[0]!;
    checks.push(["outside sees node1's address (masquerade)", seen === node1.ipv4]);
    say(`   the outside host saw the connection come from ${seen} (node1 is ${node1.ipv4})`);

    say(`\n== 5. the cluster's address table (\`ohno ipam ls\`)`);
    const ls = await lab.ipam(o.name, ["ls"]);
    for (const line of ls.stdout.trim().split("\n")) say(`   ${line}`);
    const blocks = await lab.ipam(o.name, ["blocks"]);
    for (const line of blocks.stdout.trim().split("\n")) say(`   ${line}`);
    const check = await lab.ipam(o.name, ["check"]);
    checks.push(["ohno ipam check", check.code === 0]);

    say(`\n== 6. pods deleted: addresses released`);
    for (const [, pod] of pods) await lab.podDel(o.name, pod);
    const after = JSON.parse((await lab.ipam(o.name, ["ls", "-o", "json"])).stdout) as unknown[];
    checks.push(["no allocation left after the pods are gone", after.length === 0]);
    say(`   allocations left: ${after.length}`);
  } catch (e) {
    checks.push([`demo step failed: ${(e as Error).message}`, false]);
  } finally {
    await lab.down(o.name).catch(() => {});
  }
  const failed = checks.filter(([, ok]) => !ok);
  say(`\n== summary`);
  say(
    `   ${checks.length - failed.length}/${checks.length} checks passed in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s; the lab is down again`,
  );
  for (const [what] of failed) say(`   FAILED: ${what}`);
  return failed.length === 0;
}

/** Connects from a pod to a one-shot TCP server on the outside host; returns the source it saw. */
async function sourceSeenByOutside(name: string, pod: string): Promise<string> {
  using outside = Netns.named(`ohno-lab-${name}-outside`);
  using podNs = Netns.open(lab.podNetns(name, pod));
  const server = outside.spawn("python3", {
    args: [
      "-c",
      "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);" +
      "s.bind(('0.0.0.0',7777));s.listen(1);print('ready',flush=True);c,a=s.accept();print(a[0],flush=True);c.close()",
    ],
    stdout: "piped",
    stderr: "null",
  });
  const reader = server.stdout.getReader();
  const dec = new TextDecoder();
  let text = dec.decode((await reader.read()).value);
  await runCommand(podNs, "python3", {
    args: ["-c", "import socket;socket.create_connection(('172.31.0.200',7777),timeout=3).close()"],
  });
  while (!/ready\s+\S+/.test(text)) {
    const r = await reader.read();
    if (r.done) break;
    text += dec.decode(r.value);
  }
  reader.releaseLock();
  await server.status;
  return text.replace("ready", "").trim();
}
