/**
 * bgp: pod routes exchanged by BGP, with BIRD 2 as the speaker (bird.ts). No
 * encapsulation: the nodes announce their blocks, every peer (other nodes, route
 * reflectors, a top-of-rack router) learns them and BIRD writes them to the kernel.
 *
 * On every {@link RouteSync} pass the backend renders BIRD's configuration from the
 * node's blocks, the peers' node records and its settings; when the text changed it is
 * written and BIRD reloads it (`birdc configure`). BIRD is started on the first pass
 * (or a running one is adopted) and supervised by the agent.
 *
 * Topologies ({@link bgpSessionsFor}):
 * - **node mesh** (default): a session with every other node, per address family both
 *   have;
 * - **route reflectors** (`nodeMesh: false`): nodes whose record says `routeReflector`
 *   peer with every node (the others as their clients); the other nodes peer only with
 *   the reflectors. Reflection is iBGP: every node needs the same AS number;
 * - **global peers** (a top-of-rack router): address, AS, optional password, from the
 *   node's own settings (so each node names its own rack's router); with or without the
 *   mesh.
 *
 * Identity: the AS number and the router id default from the node's address (see
 * {@link defaultAsNumber}, {@link defaultRouterId}); a peer's AS comes from its record.
 * @module
 */

import { formatIp, parseIp } from "../../ipam/addr.ts";
import { sleep } from "../../lib/async.ts";
import type { Logger } from "../../lib/log.ts";
import type { Health } from "../health.ts";
import type { Gauge, Registry } from "../metrics.ts";
import type { Netns } from "../../netns/netns.ts";
import {
  type BgpSession,
  bgpSessions,
  BIRD_ROUTE_PROTOCOL,
  birdName,
  BirdProcess,
  type BirdSession,
  isFamily,
  renderBirdConfig,
} from "./bird.ts";
import { HostGwBackend } from "./hostgw.ts";
import type { Backend, Peer, ReconcileReport, RoutingState, SkippedBlock } from "./types.ts";

/** A BGP peer outside the cluster (a top-of-rack router). */
export interface BgpGlobalPeer {
  address: string;
  asNumber: number;
  password?: string;
}

/** The bgp backend's settings (docs/daemon.md). */
export interface BgpSettings {
  /** This node's AS; default {@link defaultAsNumber}. */
  asNumber?: number | undefined;
  /** Default {@link defaultRouterId}. */
  routerId?: string | undefined;
  /** Peer with every other node (default true). */
  nodeMesh: boolean;
  /** This node is a route reflector (with `nodeMesh: false`). */
  routeReflector: boolean;
  peers: BgpGlobalPeer[];
  /** Hold time in seconds (keepalives every third of it). */
  holdTime: number;
  gracefulRestart: boolean;
}

export const BGP_DEFAULTS: BgpSettings = {
  nodeMesh: true,
  routeReflector: false,
  peers: [],
  holdTime: 90,
  gracefulRestart: true,
};

/** The first address of `family` in `ips`, canonical. */
function ipOf(ips: readonly string[], family: 4 | 6): string | undefined {
  const t = ips.find((x) => isFamily(x, family));
  return t === undefined ? undefined : formatIp(family, parseIp(t).value);
}

/**
 * The default AS number of a node: a private 4-byte AS (RFC 6996, 4200000000 and up) plus
 * the low 26 bits of its IPv4 address (else IPv6), so nodes get distinct ASes with no
 * setting and any pair of them, or a node and its rack's router, speak eBGP. Route
 * reflection needs one AS for all: set `bgpAsNumber` on every node.
 */
export function defaultAsNumber(ips: readonly string[]): number {
  const a = ipOf(ips, 4) ?? ipOf(ips, 6);
  if (!a) throw new Error("bgp needs a node address for its default AS number");
  const v = parseIp(a).value;
  return 4_200_000_000 + Number(v & 0x3ffffffn);
}

/** The default router id: the node's IPv4 address, else the low 32 bits of its IPv6 one. */
export function defaultRouterId(ips: readonly string[]): string {
  const v4 = ipOf(ips, 4);
  if (v4) return v4;
  const v6 = ipOf(ips, 6);
  if (!v6) throw new Error("bgp needs a node address for its default router id");
  return formatIp(4, parseIp(v6).value & 0xffffffffn);
}

/** What a node publishes in its etcd record for the bgp backend. */
export function bgpRecord(ips: readonly string[], s: BgpSettings): Record<string, unknown> {
  return {
    type: "bgp",
    asNumber: s.asNumber ?? defaultAsNumber(ips),
    routerId: s.routerId ?? defaultRouterId(ips),
    routeReflector: s.routeReflector,
  };
}

function peerAs(p: Peer): number {
  const v = p.backend?.asNumber;
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : defaultAsNumber(p.ips);
}

function isReflector(p: Peer): boolean {
  return p.backend?.routeReflector === true;
}

/**
 * The BGP sessions of this node (pure): the mesh or the reflector topology among the
 * nodes, per address family both ends have, and the global peers of the node's settings.
 */
export function bgpSessionsFor(
  state: RoutingState,
  s: BgpSettings,
): { sessions: BirdSession[]; skipped: SkippedBlock[] } {
  const sessions: BirdSession[] = [];
  const skipped: SkippedBlock[] = [];
  const taken = new Set<string>();
  const nodes = [...state.peers].sort((a, b) => a.node.localeCompare(b.node));
  const wanted = nodes.filter((p) => s.nodeMesh || s.routeReflector || isReflector(p));
  for (const p of wanted) {
    const name = birdName("node", p.node, taken);
    for (const f of [4, 6] as const) {
      const local = ipOf(state.local.ips, f);
      const neighbor = ipOf(p.ips, f);
      if (!local || !neighbor) {
        for (const b of p.blocks.filter((x) => x.includes(":") === (f === 6))) {
          skipped.push({
            node: p.node,
            block: b,
            reason: `no IPv${f} session: ${
              local ? `node ${p.node}` : "this node"
            } has no IPv${f} address`,
          });
        }
        continue;
      }
      sessions.push({
        name: `${name}_v${f}`,
        description: p.node,
        family: f,
        local,
        neighbor,
        neighborAs: peerAs(p),
        multihop: true,
        ...(s.routeReflector && !s.nodeMesh && !isReflector(p) ? { rrClient: true } : {}),
        export: s.routeReflector && !s.nodeMesh ? "own+bgp" : "own",
      });
    }
  }
  s.peers.forEach((g, i) => {
    const f = parseIp(g.address).family as 4 | 6;
    const local = ipOf(state.local.ips, f);
    if (!local) return;
    sessions.push({
      name: `peer${i + 1}_v${f}`,
      description: g.address,
      family: f,
      local,
      neighbor: formatIp(f, parseIp(g.address).value),
      neighborAs: g.asNumber,
      multihop: false,
      ...(g.password !== undefined ? { password: g.password } : {}),
      export: "own",
    });
  });
  return { sessions, skipped };
}

export interface BgpOptions {
  settings: BgpSettings;
  /** The pod address space (only prefixes inside it are imported). */
  clusterCIDRs: readonly string[];
  /** Where BIRD's config, socket, pid file and log go (the agent's run dir). */
  dir: string;
  log?: Logger;
  /** Called when the supervisor restarted a dead BIRD. */
  onRestart?: () => void;
  /** Where BIRD's kernel routes are read (tests); default the caller's namespace. */
  netns?: Netns | undefined;
}

/** BIRD's files under a directory. */
export function birdPaths(dir: string) {
  return {
    config: `${dir}/bird.conf`,
    socket: `${dir}/bird.ctl`,
    pidFile: `${dir}/bird.pid`,
    logFile: `${dir}/bird.log`,
  };
}

/** The bgp backend: BIRD configured from the cluster's state. */
export class BgpBackend implements Backend {
  readonly type = "bgp";
  readonly bird: BirdProcess;
  readonly #o: BgpOptions;
  readonly #paths: ReturnType<typeof birdPaths>;
  readonly #routes: HostGwBackend;
  #started = false;

  constructor(o: BgpOptions) {
    this.#o = o;
    this.#paths = birdPaths(o.dir);
    this.bird = new BirdProcess({
      config: this.#paths.config,
      socket: this.#paths.socket,
      pidFile: this.#paths.pidFile,
      ...(o.log ? { log: o.log } : {}),
      ...(o.onRestart ? { onRestart: o.onRestart } : {}),
    });
    // Reads (and, on cleanup, deletes) the routes BIRD wrote: those of its protocol.
    this.#routes = new HostGwBackend({ netns: o.netns, protocol: BIRD_ROUTE_PROTOCOL });
  }

  /** The configuration for `state` (what reconcile writes). */
  render(state: RoutingState): { text: string; skipped: SkippedBlock[] } {
    const s = this.#o.settings;
    const { sessions, skipped } = bgpSessionsFor(state, s);
    const routerId = s.routerId ?? defaultRouterId(state.local.ips);
    const text = renderBirdConfig({
      routerId,
      asNumber: s.asNumber ?? defaultAsNumber(state.local.ips),
      blocks: state.local.blocks,
      clusterCIDRs: this.#o.clusterCIDRs,
      sessions,
      holdTime: s.holdTime,
      gracefulRestart: s.gracefulRestart,
      logFile: this.#paths.logFile,
    });
    return { text, skipped };
  }

  async reconcile(state: RoutingState): Promise<ReconcileReport> {
    const { text, skipped } = this.render(state);
    Deno.mkdirSync(this.#o.dir, { recursive: true });
    let old: string | undefined;
    try {
      old = Deno.readTextFileSync(this.#paths.config);
    } catch {
      // first time
    }
    const changed = old !== text;
    if (changed) {
      const tmp = `${this.#paths.config}.tmp`;
      Deno.writeTextFileSync(tmp, text);
      Deno.renameSync(tmp, this.#paths.config);
    }
    if (!this.#started) {
      const adopting = this.bird.running();
      await this.bird.start();
      this.#started = true;
      // An adopted BIRD runs the previous agent's file: make it read this one.
      if (adopting) await this.bird.configure();
    } else if (changed && this.bird.running()) {
      await this.bird.configure();
      this.#o.log?.info("bird reconfigured", { file: this.#paths.config });
    }
    // A BIRD found dead is the supervisor's to start again (and count); it reads this file.
    const programmed = await this.kernelRoutes();
    return {
      added: [],
      replaced: [],
      deleted: [],
      unchanged: programmed[4] + programmed[6],
      conflicts: [],
      skipped,
      failed: [],
      programmed,
    };
  }

  /** Routes BIRD learned into the kernel now, by family (not the own blocks' blackholes). */
  async kernelRoutes(): Promise<{ 4: number; 6: number }> {
    const routes = (await this.#routes.ownedRoutes()).filter((r) => r.type !== "blackhole");
    const n = { 4: 0, 6: 0 };
    for (const r of routes) n[r.family]++;
    return n;
  }

  get holdTime(): number {
    return this.#o.settings.holdTime;
  }

  /** Whether BIRD protocol `name` is a session to a global peer (not a node). */
  isGlobalSession(name: string): boolean {
    return /^peer\d+_v[46]$/.test(name);
  }

  /** BIRD's BGP sessions now (throws when BIRD does not answer). */
  async sessions(): Promise<BgpSession[]> {
    return bgpSessions(await this.bird.protocols());
  }

  /** Stops BIRD and removes every route it left in the kernel. */
  async cleanup(): Promise<number> {
    await this.bird.stop();
    return await this.#routes.cleanup();
  }
}

/** BIRD's files in `dir` stopped and its routes removed (`--cleanup`, any backend). */
export async function cleanupBird(
  dir: string,
  /** The node is configured for bgp: remove BIRD's routes even when BIRD is not running. */
  bgp: boolean,
): Promise<{ stopped: boolean; routes: number }> {
  const p = birdPaths(dir);
  const bird = new BirdProcess({ config: p.config, socket: p.socket, pidFile: p.pidFile });
  const stopped = await bird.stop();
  // Routes of protocol 12 are any BIRD's: removed only when ohno's BIRD ran here.
  const routes = stopped || bgp
    ? await new HostGwBackend({ protocol: BIRD_ROUTE_PROTOCOL }).cleanup()
    : 0;
  return { stopped, routes };
}

/** Where {@link watchBgp} reports. */
export interface BgpWatchOptions {
  registry: Registry;
  health: Health;
  log: Logger;
  signal: AbortSignal;
  /** How often the sessions are read, ms (default 2000). */
  periodMs?: number;
  /**
   * `ohno_routes_programmed{backend,family}`: kept current here, since BIRD's routes arrive
   * between reconciles.
   */
  routesProgrammed?: Gauge;
}

/**
 * Supervises BIRD and reports its sessions until `signal` aborts: metrics
 * (`ohno_bgp_session_established`, `ohno_bgp_routes_received`, `ohno_bgp_bird_up`,
 * `ohno_bgp_bird_restarts_total`), the lines of `/readyz?verbose`, and readiness: the
 * agent is not ready while BIRD is down, or while a global peer's session (the fabric,
 * this node's way to the others when the mesh is off) has not been established for
 * longer than the hold time. A session to another node that is down does not make this
 * node unready: that node's trouble is its own.
 */
export async function watchBgp(backend: BgpBackend, o: BgpWatchOptions): Promise<void> {
  const r = o.registry;
  const established = r.gauge(
    "ohno_bgp_session_established",
    "1 when the BGP session is established, by session, peer (node or address) and neighbor address.",
    ["session", "peer", "neighbor"],
  );
  const received = r.gauge(
    "ohno_bgp_routes_received",
    "Routes imported from the peer over the session.",
    ["session", "peer", "neighbor"],
  );
  const up = r.gauge("ohno_bgp_bird_up", "1 when BIRD runs and answers on its control socket.");
  const restarts = r.counter(
    "ohno_bgp_bird_restarts_total",
    "Times BIRD was found dead and started again by the agent.",
  );
  const supervising = backend.bird.supervise(o.signal);
  const downSince = new Map<string, number>();
  let counted = 0;
  let wasUp = true;
  const hold = backend.holdTime * 1000;
  while (!o.signal.aborted) {
    restarts.inc({}, backend.bird.restarts - counted);
    counted = backend.bird.restarts;
    let sessions: BgpSession[] | undefined;
    try {
      sessions = await backend.sessions();
    } catch (e) {
      if (wasUp) o.log.warn("bgp: BIRD does not answer", { error: (e as Error).message });
    }
    wasUp = !!sessions;
    up.set(sessions ? 1 : 0);
    established.clear();
    received.clear();
    const lines: { ok: boolean; text: string }[] = [];
    let notReady: string | undefined = sessions ? undefined : "bgp: BIRD is not running";
    const now = Date.now();
    for (const s of sessions ?? []) {
      const labels = { session: s.name, peer: s.peer, neighbor: s.neighbor };
      established.set(s.established ? 1 : 0, labels);
      received.set(s.routesReceived, labels);
      const what = `bgp ${s.name} ${s.peer} (${s.neighbor}) ${s.state}${
        s.established ? `, ${s.routesReceived} routes received` : ""
      }${s.lastError && !s.established ? `: ${s.lastError}` : ""}`;
      lines.push({ ok: s.established, text: what });
      if (s.established) downSince.delete(s.name);
      else if (!downSince.has(s.name)) downSince.set(s.name, now);
      const global = backend.isGlobalSession(s.name);
      if (global && !s.established && now - downSince.get(s.name)! >= hold && !notReady) {
        notReady = `${what} (global peer, not established for ${
          Math.round((now - downSince.get(s.name)!) / 1000)
        } s)`;
      }
    }
    o.health.setDetails("bgp", lines);
    if (o.routesProgrammed) {
      try {
        const n = await backend.kernelRoutes();
        for (const f of [4, 6] as const) {
          o.routesProgrammed.set(n[f], { backend: "bgp", family: `ipv${f}` });
        }
      } catch {
        // the next pass
      }
    }
    if (notReady) o.health.setReady(false, notReady);
    else if (!o.health.ready) o.health.setReady(true);
    await sleep(o.periodMs ?? 2000, o.signal);
  }
  await supervising;
}
