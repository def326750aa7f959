/**
 * `deno task bench`: ohno's benchmarks, each next to the reference plugins measured in
 * the same run, with the ratio printed (machines here are noisy; absolute times are
 * not comparable between runs, ratios are).
 *
 * Usage: deno task bench [suite…]   (default: all suites)
 * @module
 */

import { benchAgent } from "./agent.ts";
import { benchCni } from "./cni.ts";
import { benchIpam } from "./ipam.ts";
import { benchStartup } from "./startup.ts";
import { benchRoutes } from "./routes.ts";
import { note } from "./stats.ts";
import { sweepStaleTestNetns, sweepTestNetnsOf } from "../support/netns.ts";

/** Suites by name; later issues add theirs here. */
const SUITES: Record<string, () => Promise<void>> = {
  startup: () => benchStartup(),
  cni: () => benchCni(),
  ipam: () => benchIpam(),
  agent: () => benchAgent(),
  routes: () => benchRoutes(),
};

// Interrupted (Ctrl-C, a session's end): remove this run's namespaces before leaving, and
// those an earlier interrupted run could not.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    note(`\n${sig}: removing this run's namespaces`);
    sweepTestNetnsOf().finally(() => Deno.exit(130));
  });
}
await sweepStaleTestNetns();

const wanted = Deno.args.length ? Deno.args : Object.keys(SUITES);
for (const name of wanted) {
  const suite = SUITES[name];
  if (!suite) {
    note(`unknown suite ${name}; suites: ${Object.keys(SUITES).join(", ")}`);
    Deno.exit(2);
  }
  await suite();
}
