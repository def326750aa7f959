/**
 * The lab fabric's BGP: BIRD in the routed underlay's router namespace, a top-of-rack
 * router that peers (eBGP, AS {@link LAB_ROUTER_AS}) with any node of the underlay that
 * connects (dynamic neighbours, passive), learns the nodes' blocks into its kernel and
 * passes them on to the other nodes. With `speaks: false` it stays silent (no BIRD): a
 * router that does not speak BGP, for the agent to report the idle session.
 * @module
 */

import { type Netns, runCommand } from "../netns/netns.ts";
import { processAlive } from "../lib/proc.ts";
import {
  type BgpSession,
  bgpSessions,
  BIRD_BIN,
  BIRDC_BIN,
  birdString,
  parseBirdProtocols,
} from "../daemon/routing/bird.ts";

/** The lab router's AS number. */
export const LAB_ROUTER_AS = 65000;

/** The router's BIRD configuration: the underlay prefixes it accepts sessions from. */
export function labRouterConfig(
  o: { routerId: string; underlay4: string; underlay6: string; logFile: string; password?: string },
): string {
  const pw = o.password !== undefined ? [`  password ${birdString(o.password)};`] : [];
  const lines = [
    "# The ohno lab's top-of-rack router (written by ohno lab up).",
    `log ${birdString(o.logFile)} all;`,
    `router id ${o.routerId};`,
    "protocol device { scan time 10; }",
    "protocol direct { ipv4; ipv6; }",
  ];
  for (const [f, range] of [[4, o.underlay4], [6, o.underlay6]] as const) {
    lines.push(
      `protocol kernel kernel${f} { ipv${f} { export where source = RTS_BGP; }; }`,
      `protocol bgp nodes${f} {`,
      `  local as ${LAB_ROUTER_AS};`,
      `  neighbor range ${range} external;`,
      "  hold time 9;",
      "  keepalive time 3;",
      "  graceful restart on;",
      ...pw,
      `  ipv${f} { import all; export where source = RTS_BGP; };`,
      "}",
    );
  }
  return lines.join("\n") + "\n";
}

/** Starts BIRD in the router namespace `ns` with its files in `dir`; returns its pid. */
export async function startLabRouter(
  ns: Netns,
  dir: string,
  o: { routerId: string; underlay4: string; underlay6: string; password?: string },
): Promise<number> {
  const config = `${dir}/router-bird.conf`;
  const socket = `${dir}/router-bird.ctl`;
  const pidFile = `${dir}/router-bird.pid`;
  Deno.writeTextFileSync(
    config,
    labRouterConfig({ ...o, logFile: `${dir}/router-bird.log` }),
  );
  const r = await runCommand(ns, BIRD_BIN, {
    args: ["-c", config, "-s", socket, "-P", pidFile],
  });
  if (r.code !== 0) throw new Error(`the lab router's BIRD did not start: ${r.stderr.trim()}`);
  for (let i = 0; i < 50; i++) {
    try {
      const pid = Number(Deno.readTextFileSync(pidFile).trim());
      if (processAlive(pid)) return pid;
    } catch {
      // not yet
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`the lab router's BIRD wrote no pid file (${pidFile})`);
}

/** The router's control socket in the lab dir (for `birdc -s`). */
export function labRouterSocket(dir: string): string {
  return `${dir}/router-bird.ctl`;
}

/**
 * The BGP sessions of the BIRD whose control socket is `socket` (run in `ns`), or
 * undefined when there is no such BIRD (a node of another backend).
 */
export async function bgpStatus(ns: Netns, socket: string): Promise<BgpSession[] | undefined> {
  try {
    Deno.statSync(socket);
  } catch {
    return undefined;
  }
  const r = await runCommand(ns, BIRDC_BIN, { args: ["-s", socket, "show", "protocols", "all"] });
  if (r.code !== 0 || /Unable to connect/.test(r.stdout + r.stderr)) return undefined;
  return bgpSessions(parseBirdProtocols(r.stdout));
}
