/**
 * BIRD 2, the BGP speaker of the bgp backend: its configuration rendered from the
 * cluster's state (pure, {@link renderBirdConfig}), its protocol table read back
 * ({@link parseBirdProtocols}), and the process itself run and supervised by the agent
 * ({@link BirdProcess}). ohno writes no BGP of its own: BIRD speaks BGP and programs the
 * kernel; ohno tells it whom to peer with and what to announce.
 *
 * What the rendered configuration makes BIRD do:
 *
 * - **Announce** the node's own blocks, as `blackhole` routes for the whole block
 *   (protocols `ohno_blocks4`/`ohno_blocks6`). The same blackholes go to the kernel with
 *   metric {@link BLACKHOLE_METRIC}, under the bridge's connected route (metric 0 for
 *   IPv4, 256 for IPv6): traffic for an unused address of the block is dropped on the
 *   node instead of following the default route back to the fabric and looping.
 * - **Import** other nodes' blocks into the kernel. Only prefixes inside the cluster
 *   CIDRs and not inside the node's own blocks are accepted from a peer, so a peer that
 *   announces a default route cannot take over the host's. BIRD marks its kernel routes
 *   with protocol 12 (`proto bird`, fixed in BIRD: {@link BIRD_ROUTE_PROTOCOL}), which
 *   host-gw's and vxlan's reconcile (protocol 111) never read; BIRD in turn touches only
 *   its own.
 * - **Resolve next hops** recursively: BIRD learns the kernel's routes (`learn`) and the
 *   connected networks (`direct`), outside the cluster CIDRs, so that a peer in another
 *   subnet (multihop) is reached through the node's default route.
 * - **Keep forwarding** across restarts: graceful restart on every session and in the
 *   kernel protocol (a restarted BIRD keeps its kernel routes until it has converged).
 * @module
 */

import { type Cidr, formatCidr, parseCidr, parseIp } from "../../ipam/addr.ts";
import type { Logger } from "../../lib/log.ts";
import { processAlive } from "../../lib/proc.ts";
import { runCommand } from "../../netns/netns.ts";

/** The protocol number BIRD gives the routes it writes to the kernel (`proto bird`). */
export const BIRD_ROUTE_PROTOCOL = 12;
/** Kernel metric of the blackhole route of a node's own block. */
export const BLACKHOLE_METRIC = 4242;
export const BIRD_BIN = Deno.env.get("OHNO_BIRD_BIN") ?? "/usr/sbin/bird";
export const BIRDC_BIN = Deno.env.get("OHNO_BIRDC_BIN") ?? "/usr/sbin/birdc";

/** One BGP session to render. */
export interface BirdSession {
  /** BIRD protocol name (letters, digits, `_`). */
  name: string;
  /** Shown as the protocol's description (the peer node's name, or the peer's address). */
  description: string;
  family: 4 | 6;
  /** This node's address of that family. */
  local: string;
  neighbor: string;
  neighborAs: number;
  /** Peers not on a link of this node (other nodes: always; a top-of-rack router: no). */
  multihop: boolean;
  /** This node reflects routes to the peer (this node is a reflector, the peer a client). */
  rrClient?: boolean;
  password?: string;
  /** What to announce: `own` blocks only, or also routes learned by BGP (reflectors). */
  export: "own" | "own+bgp";
}

export interface BirdConfigInput {
  routerId: string;
  asNumber: number;
  /** The node's own blocks (announced). */
  blocks: readonly string[];
  /** The cluster's pod address space: the only prefixes accepted from peers. */
  clusterCIDRs: readonly string[];
  sessions: readonly BirdSession[];
  /** Seconds (BIRD: 3-65535). */
  holdTime: number;
  gracefulRestart: boolean;
  /** Route-reflector cluster id (reflectors only). */
  rrClusterId?: string;
  /** BIRD's own log file. */
  logFile: string;
}

/**
 * A string in BIRD's configuration syntax, which has no escapes: a `"`, `\\` or control
 * character is refused (the settings refuse them first, naming the key).
 */
export function birdString(s: string): string {
  if ([...s].some((c) => c === '"' || c === "\\" || c.charCodeAt(0) < 32)) {
    throw new TypeError(`${JSON.stringify(s)} cannot be written in BIRD's configuration`);
  }
  return `"${s}"`;
}
const q = birdString;

function cidrsOf(list: readonly string[], family: 4 | 6): Cidr[] {
  return list.map((c) => parseCidr(c)).filter((c) => c.family === family);
}

/** A BIRD prefix set matching `cidrs` and everything inside them, or undefined if empty. */
function prefixSet(cidrs: Cidr[]): string | undefined {
  return cidrs.length ? `[ ${cidrs.map((c) => `${formatCidr(c)}+`).join(", ")} ]` : undefined;
}

/**
 * BIRD's configuration for a node: pure, so every topology is table-tested. The same
 * input gives the same text (the agent reloads BIRD only when it changes).
 */
export function renderBirdConfig(i: BirdConfigInput): string {
  const out: string[] = [
    "# Written by the ohno agent (backend bgp). Do not edit: rewritten on every change.",
    `log ${q(i.logFile)} { info, remote, warning, error, auth, fatal, bug };`,
    `router id ${i.routerId};`,
    "",
    "protocol device { scan time 10; }",
    "",
  ];
  for (const f of [4, 6] as const) {
    const cluster = prefixSet(cidrsOf(i.clusterCIDRs, f));
    const own = prefixSet(cidrsOf(i.blocks, f));
    const notCluster = cluster ? `!(net ~ ${cluster})` : "true";
    out.push(
      `# IPv${f}: routes outside the pod space, to resolve next hops; never exported.`,
      `protocol direct direct${f} { ipv${f} { import where ${notCluster}; }; }`,
      `protocol kernel kernel${f} {`,
      `  ipv${f} {`,
      `    import where ${notCluster};`,
      `    export where proto = "ohno_blocks${f}" || source = RTS_BGP;`,
      "  };",
      "  learn;",
      "  scan time 10;",
      "  metric 0;",
      ...(i.gracefulRestart ? ["  graceful restart on;"] : []),
      "}",
      `protocol static ohno_blocks${f} {`,
      `  ipv${f};`,
      ...cidrsOf(i.blocks, f).map((c) =>
        `  route ${formatCidr(c)} blackhole { krt_metric = ${BLACKHOLE_METRIC}; };`
      ),
      "}",
      `filter ohno_import${f} {`,
      cluster
        ? `  if net ~ ${cluster}${own ? ` && !(net ~ ${own})` : ""} then accept;`
        : "  # no cluster CIDR of this family",
      "  reject;",
      "}",
      `filter ohno_export_own${f} {`,
      `  if proto = "ohno_blocks${f}" then accept;`,
      "  reject;",
      "}",
      `filter ohno_export_reflect${f} {`,
      `  if proto = "ohno_blocks${f}" || source = RTS_BGP then accept;`,
      "  reject;",
      "}",
      "",
    );
  }
  for (const s of i.sessions) {
    out.push(
      `protocol bgp ${s.name} {`,
      `  description ${q(s.description)};`,
      `  local ${s.local} as ${i.asNumber};`,
      `  neighbor ${s.neighbor} as ${s.neighborAs};`,
      ...(s.multihop ? ["  multihop;"] : []),
      `  hold time ${i.holdTime};`,
      `  keepalive time ${Math.max(1, Math.floor(i.holdTime / 3))};`,
      // A node joining or coming back is retried within seconds, not BIRD's defaults (5 s
      // before the first connect, 120 s between retries, 60-300 s after an error): one side
      // connecting before the other has configured the session must not leave it down.
      "  connect delay time 1;",
      "  connect retry time 5;",
      "  error wait time 1, 10;",
      ...(i.gracefulRestart ? ["  graceful restart on;"] : []),
      ...(s.password !== undefined ? [`  password ${q(s.password)};`] : []),
      ...(s.rrClient ? ["  rr client;", `  rr cluster id ${i.rrClusterId ?? i.routerId};`] : []),
      `  ipv${s.family} {`,
      `    import filter ohno_import${s.family};`,
      `    export filter ohno_export_${s.export === "own" ? "own" : "reflect"}${s.family};`,
      "  };",
      "}",
      "",
    );
  }
  return out.join("\n");
}

/** A BIRD protocol name for `text` (letters, digits and `_`), unique among `taken`. */
export function birdName(prefix: string, text: string, taken: Set<string>): string {
  const base = `${prefix}_${text.replace(/[^A-Za-z0-9]/g, "_")}`.slice(0, 60);
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}_${n}`;
  taken.add(name);
  return name;
}

/** One protocol from `birdc show protocols all`. */
export interface BirdProtocol {
  name: string;
  proto: string;
  /** `up`, `start`, `down`, … */
  state: string;
  info: string;
  description?: string;
  /** BGP only. */
  bgpState?: string;
  neighborAddress?: string;
  neighborAs?: number;
  lastError?: string;
  /** Routes imported from the peer (summed over channels). */
  routesImported?: number;
  routesExported?: number;
}

/** Parses the text of `birdc show protocols all`. */
export function parseBirdProtocols(text: string): BirdProtocol[] {
  const out: BirdProtocol[] = [];
  let cur: BirdProtocol | undefined;
  for (const line of text.split("\n")) {
    if (!line.trim() || /^BIRD .* ready\.$/.test(line) || /^Name\s+Proto\s+Table/.test(line)) {
      continue;
    }
    if (!/^\s/.test(line)) {
      const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+(?:\s\S+)?)\s*(.*)$/.exec(line);
      if (!m) continue;
      // "Since" is a time, or a date and a time (one blank between); columns are padded.
      cur = { name: m[1]!, proto: m[2]!, state: m[4]!, info: m[6]!.trim() };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    const kv = /^\s+([A-Za-z][A-Za-z .]*?):\s+(.*)$/.exec(line);
    if (!kv) continue;
    const [, k, v] = kv as unknown as [string, string, string];
    switch (k) {
      case "Description":
        cur.description = v.trim();
        break;
      case "BGP state":
        cur.bgpState = v.trim();
        break;
      case "Neighbor address":
        cur.neighborAddress = v.trim();
        break;
      case "Neighbor AS":
        cur.neighborAs = Number(v.trim());
        break;
      case "Last error":
        cur.lastError = v.trim();
        break;
      case "Routes": {
        const r = /(\d+) imported, (?:(\d+) filtered, )?(\d+) exported/.exec(v);
        if (r) {
          cur.routesImported = (cur.routesImported ?? 0) + Number(r[1]);
          cur.routesExported = (cur.routesExported ?? 0) + Number(r[3]);
        }
        break;
      }
    }
  }
  return out;
}

/** A BGP session as the agent reports it (status, metrics, readiness). */
export interface BgpSession {
  name: string;
  /** The peer node, or the peer's address for a global peer. */
  peer: string;
  neighbor: string;
  established: boolean;
  /** BIRD's BGP state (`Established`, `Active`, `Connect`, `Idle`, …). */
  state: string;
  routesReceived: number;
  lastError?: string;
}

/** The BGP sessions among BIRD's protocols. */
export function bgpSessions(protocols: readonly BirdProtocol[]): BgpSession[] {
  return protocols.filter((p) => p.proto === "BGP").map((p) => ({
    name: p.name,
    peer: p.description ?? p.neighborAddress ?? p.name,
    neighbor: p.neighborAddress ?? "",
    established: p.bgpState === "Established",
    state: p.bgpState ?? p.state,
    routesReceived: p.routesImported ?? 0,
    ...(p.lastError ? { lastError: p.lastError } : {}),
  }));
}

/** Runs `birdc -s SOCKET ARGS…`; throws with BIRD's words when it fails. */
export async function birdc(socket: string, args: string[]): Promise<string> {
  const r = await runCommand(undefined, BIRDC_BIN, { args: ["-s", socket, ...args] });
  const text = r.stdout + r.stderr;
  if (r.code !== 0 || /Unable to connect to server control socket/.test(text)) {
    throw new Error(`birdc ${args.join(" ")}: ${text.trim() || `exit ${r.code}`}`);
  }
  return r.stdout;
}

export interface BirdProcessOptions {
  /** BIRD's configuration file (written by the caller before {@link BirdProcess.start}). */
  config: string;
  /** Its control socket. */
  socket: string;
  /** Its pid file (a BIRD left running by a previous agent is adopted through it). */
  pidFile: string;
  log?: Logger;
  /** Called after BIRD was found dead and started again. */
  onRestart?: () => void;
  /** How often liveness is checked, ms (default 1000). */
  checkMs?: number;
}

/**
 * BIRD, run and supervised by the agent. BIRD outlives the agent on purpose: a stopped or
 * restarting agent leaves routing as it is (the next agent adopts the running BIRD
 * through its pid file); `stop()` ends it (`ohno daemon --cleanup`). When BIRD dies, the
 * supervisor logs it, starts it again and counts it ({@link BirdProcessOptions.onRestart}).
 */
export class BirdProcess {
  readonly #o: BirdProcessOptions;
  #pid: number | undefined;
  #restarts = 0;
  #starting: Promise<void> | undefined;

  constructor(o: BirdProcessOptions) {
    this.#o = o;
  }

  get pid(): number | undefined {
    return this.#pid;
  }

  /** Times BIRD was found dead and started again. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Whether BIRD runs (the pid we know, or the pid file's). */
  running(): boolean {
    const pid = this.#pid ?? readPid(this.#o.pidFile);
    return pid !== undefined && processAlive(pid) && isBird(pid);
  }

  /**
   * Starts BIRD unless one runs already (adopted); waits until its socket answers. Calls
   * made while a start is under way wait for it (one BIRD, never two).
   */
  start(): Promise<void> {
    this.#starting ??= this.#start().finally(() => (this.#starting = undefined));
    return this.#starting;
  }

  async #start(): Promise<void> {
    const old = readPid(this.#o.pidFile);
    if (old !== undefined && processAlive(old) && isBird(old)) {
      this.#pid = old;
      this.#o.log?.info("bird: adopted the running BIRD", { pid: old });
      return;
    }
    const child = new Deno.Command(BIRD_BIN, {
      args: ["-f", "-c", this.#o.config, "-s", this.#o.socket, "-P", this.#o.pidFile],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#pid = child.pid;
    // Reap it, and keep what it said on the way out for the log.
    const stderr = new Response(child.stderr).text().catch(() => "");
    child.status.then(async (s) => {
      if (this.#pid === child.pid) {
        this.#o.log?.warn("bird exited", { pid: child.pid, code: s.code, stderr: await stderr });
      }
    }).catch(() => {});
    child.unref();
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        await birdc(this.#o.socket, ["show", "status"]);
        break;
      } catch (e) {
        if (!processAlive(child.pid) || Date.now() > until) {
          throw new Error(
            `BIRD did not start (${BIRD_BIN} -c ${this.#o.config}): ${
              (await Promise.race([stderr, new Promise((r) => setTimeout(() => r(""), 500))])) ||
              (e as Error).message
            }`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    this.#o.log?.info("bird started", { pid: child.pid, config: this.#o.config });
  }

  /** `birdc configure`: BIRD re-reads its file; throws with BIRD's message if it refuses. */
  async configure(): Promise<void> {
    const out = await birdc(this.#o.socket, ["configure"]);
    if (!/Reconfigured|Reconfiguration in progress|Reconfiguration already in progress/.test(out)) {
      throw new Error(`BIRD refused its configuration: ${out.trim()}`);
    }
  }

  async protocols(): Promise<BirdProtocol[]> {
    return parseBirdProtocols(await birdc(this.#o.socket, ["show", "protocols", "all"]));
  }

  /** Watches BIRD until `signal` aborts; a dead BIRD is logged, started again and counted. */
  async supervise(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await new Promise((r) => setTimeout(r, this.#o.checkMs ?? 1000));
      if (signal.aborted || this.running()) continue;
      this.#restarts++;
      this.#o.log?.error("bird is not running; starting it again", {
        pid: this.#pid,
        restarts: this.#restarts,
      });
      this.#pid = undefined;
      try {
        await this.start();
        this.#o.onRestart?.();
      } catch (e) {
        this.#o.log?.error("bird restart failed", { error: (e as Error).message });
      }
    }
  }

  /** Stops BIRD (it withdraws its kernel routes as it goes); true if one was running. */
  async stop(): Promise<boolean> {
    const pid = this.#pid ?? readPid(this.#o.pidFile);
    this.#pid = undefined;
    if (pid === undefined || !processAlive(pid) || !isBird(pid)) return false;
    try {
      await birdc(this.#o.socket, ["down"]);
    } catch {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
    }
    const until = Date.now() + 10_000;
    while (processAlive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    if (processAlive(pid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    return true;
  }
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(Deno.readTextFileSync(file).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is a BIRD (a stale pid file may name a recycled pid). */
function isBird(pid: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/comm`).trim() === "bird";
  } catch {
    return false;
  }
}

/** Whether `text` is an IP address of `family`. */
export function isFamily(text: string, family: 4 | 6): boolean {
  try {
    return parseIp(text).family === family;
  } catch {
    return false;
  }
}
