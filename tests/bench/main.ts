/**
 * `deno task bench`: ohno's benchmarks, each next to the reference plugins measured in
 * the same run, with the ratio printed (machines here are noisy; absolute times are
 * not comparable between runs, ratios are).
 *
 * Usage: deno task bench [suite…] [--baseline REF]   (default: all suites but scale, agents,
 *        dataplane, vxlan, netlink, bgp, kube: those run only when named)
 * @module
 */

import { benchAgent } from "./agent.ts";
import { benchBgp } from "./bgp.ts";
import { benchCni } from "./cni.ts";
import { benchDataplane } from "./dataplane.ts";
import { benchIpam } from "./ipam.ts";
import { benchIpamCli } from "./ipamcli.ts";
import { benchKube } from "./kube.ts";
import { benchMacvlan } from "./macvlan.ts";
import { benchNetlink } from "./netlink.ts";
import { benchStartup } from "./startup.ts";
import { benchRoutes } from "./routes.ts";
import { benchAgents, benchScale } from "./scale.ts";
import { note } from "./stats.ts";
import { benchVxlan } from "./vxlan.ts";
import { sweepStaleTestNetns, sweepTestNetnsOf } from "../support/netns.ts";

// Suite names, and flags for the suites (`--baseline REF` for scale).
const names: string[] = [];
const flags: string[] = [];
for (let i = 0; i < Deno.args.length; i++) {
  const a = Deno.args[i]!;
  if (a.startsWith("--")) flags.push(a, ...(a.includes("=") ? [] : [Deno.args[++i] ?? ""]));
  else names.push(a);
}

/** Suites by name; later issues add theirs here. */
const SUITES: Record<string, () => Promise<void>> = {
  startup: () => benchStartup(),
  cni: () => benchCni(),
  macvlan: () => benchMacvlan(),
  ipam: () => benchIpam(),
  ipamcli: () => benchIpamCli(),
  agent: () => benchAgent(),
  routes: () => benchRoutes(),
  scale: () => benchScale(flags),
  agents: () => benchAgents(),
  dataplane: () => benchDataplane(),
  vxlan: () => benchVxlan(),
  netlink: () => benchNetlink(),
  bgp: () => benchBgp(),
  kube: () => benchKube(),
};
/** Suites that run only when named (minutes each, a 30-node lab, or a library's own bench). */
const ON_REQUEST = new Set(["scale", "agents", "dataplane", "vxlan", "netlink", "bgp", "kube"]);

// Interrupted (Ctrl-C, a session's end): remove this run's namespaces before leaving, and
// those an earlier interrupted run could not.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    note(`\n${sig}: removing this run's namespaces`);
    sweepTestNetnsOf().finally(() => Deno.exit(130));
  });
}
await sweepStaleTestNetns();

const wanted = names.length ? names : Object.keys(SUITES).filter((s) => !ON_REQUEST.has(s));
for (const name of wanted) {
  const suite = SUITES[name];
  if (!suite) {
    note(`unknown suite ${name}; suites: ${Object.keys(SUITES).join(", ")}`);
    Deno.exit(2);
  }
  await suite();
}
