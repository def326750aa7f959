/**
 * `./dev bench scale`: what a burst of cluster changes costs one agent, in a 1-node lab
 * whose etcd gets N more nodes written at once (as N agents starting together write their
 * records and block claims, tests/support/fakenodes.ts):
 *
 * 1. N nodes join at once (N = 1,000 and 5,000);
 * 2. then 10 % of them leave at once;
 * 3. then an etcd compaction forces a re-list: the agent's node is cut off from etcd, 10
 *    more nodes join, etcd compacts and restarts, the partition heals; the agent's watch
 *    resumes from a compacted revision and must list again.
 *
 * For each phase: time until the kernel holds every route, the agent's CPU seconds and
 * reconcile count until it settles (its counters still for 3 s), its peak and settled
 * RSS, and the Range requests etcd served (read from etcd's own metrics, so the previous
 * agent is measured the same way). `--baseline REF` (default: the agent before the
 * in-memory peer view) builds that revision in a temporary worktree and measures it too,
 * at 1,000 nodes only: it needs minutes where the current one needs a second.
 *
 * `./dev bench agents`: 30 real agents started at once in one lab; etcd's load (requests,
 * watchers, CPU) and each agent's cost, with a projection to 1,000 and 5,000 nodes.
 * @module
 */

import * as labs from "../../lab/lab.ts";
import { labOpen } from "../../lab/topology.ts";
import { type Netns, runCommand } from "../../netns/netns.ts";
import { agentMetrics, fakeNodes } from "../support/fakenodes.ts";
import { note, printTable } from "./stats.ts";

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const OHNO = `${REPO}/dist/ohno`;
/** The last commit whose agent re-listed the cluster on every watch event. */
export const DEFAULT_BASELINE = "509da63";
const SETTLE_DEADLINE_MS = 240_000;

function procStat(pid: number): { cpu: number; rss: number; hwm: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]); // utime + stime
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return { cpu: ticks / 100, rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
}

/** Resets the kernel's peak-RSS mark of a process, so a phase reports its own peak. */
function resetPeak(pid: number): void {
  Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
}

async function etcdMetric(lab: Netns, prefix: string): Promise<number> {
  const r = await runCommand(lab, "curl", { args: ["-s", "http://127.0.0.1:2379/metrics"] });
  return r.stdout.split("\n").filter((l) => l.startsWith(prefix))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}
const RANGES = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Range"';

async function routeCount(ns: Netns): Promise<number> {
  const r = await runCommand(ns, "sh", {
    args: ["-c", "{ ip -4 route show proto 111; ip -6 route show proto 111; } | wc -l"],
  });
  return Number(r.stdout.trim());
}

const reconciles = (m: Map<string, number>) =>
  [...m].filter(([k]) => k.startsWith("ohno_route_reconciles_total"))
    .reduce((n, [, v]) => n + v, 0);

interface Phase {
  what: string;
  /** Time the writers took (N agents' commits, by one process). */
  writeS: number;
  /** From the last commit to every route in the kernel. */
  routesS: number | undefined;
  cpuS: number;
  reconciles: number;
  peakMb: number;
  settledMb: number;
  ranges: number;
  settled: boolean;
}

async function measure(
  what: string,
  ctx: { lab: Netns; node: Netns; pid: () => number },
  wantRoutes: number,
  act: () => Promise<void>,
): Promise<Phase> {
  const pid0 = ctx.pid();
  resetPeak(pid0);
  const s0 = procStat(pid0);
  const r0 = reconciles(await agentMetrics(ctx.node));
  const e0 = await etcdMetric(ctx.lab, RANGES);
  const tw = performance.now();
  await act();
  const t0 = performance.now();
  const writeS = (t0 - tw) / 1000;
  let routesS: number | undefined;
  let last = "";
  let stillSince = performance.now();
  let settled = false;
  while (performance.now() - t0 < SETTLE_DEADLINE_MS) {
    if (routesS === undefined && await routeCount(ctx.node) === wantRoutes) {
      routesS = (performance.now() - t0) / 1000;
    }
    const m = await agentMetrics(ctx.node).catch(() => new Map<string, number>());
    const now = JSON.stringify([reconciles(m), Math.round(procStat(ctx.pid()).cpu * 10)]);
    if (now !== last) {
      last = now;
      stillSince = performance.now();
    } else if (routesS !== undefined && performance.now() - stillSince > 3000) {
      settled = true;
      break;
    }
    await new Promise((r) => setTimeout(r, routesS === undefined ? 50 : 500));
  }
  const pid = ctx.pid();
  const s1 = procStat(pid);
  const e1 = await etcdMetric(ctx.lab, RANGES);
  return {
    what,
    writeS,
    routesS,
    cpuS: s1.cpu - (pid === pid0 ? s0.cpu : 0),
    reconciles: reconciles(await agentMetrics(ctx.node)) - r0,
    peakMb: s1.hwm,
    settledMb: s1.rss,
    // etcd's counters start again when it restarts (the compaction phase).
    ranges: e1 >= e0 ? e1 - e0 : e1,
    settled,
  };
}

let runs = 0;
/** One agent (binary `ohno`) through the three phases with `n` joining nodes. */
export async function scenario(
  label: string,
  ohno: string,
  n: number,
  opts: { keep?: boolean } = {},
): Promise<string[][]> {
  const name = `bsc${Deno.pid % 10000}x${runs++}`;
  await labs.up({ name, nodes: 1, ohno });
  const lab = labOpen(name);
  try {
    const ctx = {
      lab: lab.ns,
      node: lab.node("node1").ns,
      pid: () => labs.readState(name).nodes[0]!.pid,
    };
    const etcd = "http://127.0.0.1:2379";
    const phases: Phase[] = [];
    phases.push(
      await measure(`${n} join`, ctx, 2 * n, () => fakeNodes(lab.ns, etcd, "put", 0, n, 128)),
    );
    const leave = Math.floor(n / 10);
    phases.push(
      await measure(
        `${leave} leave`,
        ctx,
        2 * (n - leave),
        () => fakeNodes(lab.ns, etcd, "delete", 0, leave, 128),
      ),
    );
    phases.push(
      await measure("compaction → re-list", ctx, 2 * (n - leave + 10), async () => {
        // A partition during which etcd compacts: the agent's node answers etcd's packets
        // with a reset (so etcd drops the connection and no event of the partition reaches
        // the agent later), 10 nodes join, etcd compacts and restarts, the partition heals.
        // The agent's watch resumes from a revision etcd no longer has: it must list again.
        const nft = async (script: string) => {
          const r = await runCommand(ctx.node, "nft", { args: ["-f", "-"], stdinText: script });
          if (r.code !== 0) throw new Error(`nft: ${r.stderr}`);
        };
        await nft(
          "table inet ohnobench { chain in { type filter hook input priority 0; " +
            "tcp sport 2379 reject with tcp reset; }; }",
        );
        try {
          await fakeNodes(lab.ns, etcd, "put", n, n + 10);
          const st = await runCommand(lab.ns, "etcdctl", {
            args: ["--endpoints", etcd, "endpoint", "status", "-w", "json"],
          });
          const rev = JSON.parse(st.stdout)[0].Status.header.revision;
          const c = await runCommand(lab.ns, "etcdctl", {
            args: ["--endpoints", etcd, "compact", `${rev}`],
          });
          if (c.code !== 0) throw new Error(`etcdctl compact ${rev}: ${c.stderr}`);
          await labs.etcdStop(name);
          await labs.etcdStart(name);
        } finally {
          await nft("delete table inet ohnobench");
        }
      }),
    );
    return phases.map((p) => [
      label,
      p.what,
      p.writeS.toFixed(2),
      p.routesS === undefined ? `> ${SETTLE_DEADLINE_MS / 1000}` : p.routesS.toFixed(2),
      p.cpuS.toFixed(1),
      `${p.reconciles}${p.settled ? "" : " (not settled)"}`,
      p.peakMb.toFixed(0),
      p.settledMb.toFixed(0),
      String(p.ranges),
    ]);
  } finally {
    lab.close();
    if (opts.keep) note(`lab ${name} kept`);
    else await labs.down(name);
  }
}

/** Builds dist/ohno of `ref` in a temporary worktree; returns it and a cleanup. */
async function buildBaseline(ref: string): Promise<{ ohno: string; remove: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "ohno-baseline-" });
  const git = (args: string[]) => runCommand(undefined, "git", { args, cwd: REPO });
  const remove = async () => {
    await git(["worktree", "remove", "--force", dir]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const add = await git(["worktree", "add", "--detach", dir, ref]);
  if (add.code !== 0) throw new Error(`git worktree add ${ref}: ${add.stderr}`);
  try {
    await Deno.symlink(`${REPO}/tools/deno/node_modules`, `${dir}/tools/deno/node_modules`);
    await Deno.symlink(`${REPO}/.cache`, `${dir}/.cache`);
    const b = await runCommand(undefined, Deno.execPath(), {
      args: ["run", "-A", "scripts/build.ts"],
      cwd: dir,
    });
    if (b.code !== 0) throw new Error(`building ${ref}: ${b.stderr}`);
    return { ohno: `${dir}/dist/ohno`, remove };
  } catch (e) {
    await remove();
    throw e;
  }
}

export async function benchScale(args: string[] = []): Promise<void> {
  const at = args.indexOf("--baseline");
  const ref = at >= 0 ? args[at + 1] : DEFAULT_BASELINE;
  const rows: string[][] = [];
  for (const n of [1000, 5000]) rows.push(...await scenario("now", OHNO, n));
  if (ref !== "none" && ref) {
    note(`building the baseline agent (${ref})`);
    const base = await buildBaseline(ref);
    try {
      rows.push(...await scenario(`before (${ref})`, base.ohno, 1000));
    } finally {
      await base.remove();
    }
  }
  printTable(
    "one agent under cluster bursts (writes: the burst's commits; routes: from the last commit to every route in the kernel; CPU: the agent's, until it settles)",
    [
      "agent",
      "phase",
      "writes s",
      "→ routes s",
      "CPU s",
      "reconciles",
      "peak MB",
      "settled MB",
      "etcd ranges",
    ],
    rows,
  );
}

/** 30 real agents joining at once. */
export async function benchAgents(count = 30): Promise<void> {
  const name = `bag${Deno.pid % 10000}`;
  const t0 = performance.now();
  await labs.up({ name, nodes: count, ohno: OHNO });
  const upS = (performance.now() - t0) / 1000;
  const lab = labOpen(name);
  try {
    const state = labs.readState(name);
    const etcdPid = state.etcd.pid;
    const e = procStat(etcdPid);
    const metric = (p: string) => etcdMetric(lab.ns, p);
    const [ranges, txns, watchers, streams] = await Promise.all([
      metric(RANGES),
      metric('grpc_server_handled_total{grpc_code="OK",grpc_method="Txn"'),
      metric("etcd_debugging_mvcc_watcher_total"),
      metric("etcd_debugging_mvcc_watch_stream_total"),
    ]);
    const agents = state.nodes.map((n) => ({ n, s: procStat(n.pid) }));
    const cpu = agents.map((a) => a.s.cpu).sort((a, b) => a - b);
    const rss = agents.map((a) => a.s.rss).sort((a, b) => a - b);
    const med = (xs: number[]) => xs[Math.floor(xs.length / 2)]!;
    printTable(`${count} real agents started at once (lab up to all routes: ${upS.toFixed(1)} s)`, [
      "what",
      "value",
      "per node",
    ], [
      ["etcd Range requests", String(ranges), (ranges / count).toFixed(1)],
      ["etcd Txn requests", String(txns), (txns / count).toFixed(1)],
      ["etcd watchers / watch streams", `${watchers} / ${streams}`, (watchers / count).toFixed(1)],
      ["etcd CPU s / RSS MB", `${e.cpu.toFixed(1)} / ${e.rss.toFixed(0)}`, ""],
      [
        "agent CPU s (median, max)",
        `${med(cpu).toFixed(1)}, ${cpu.at(-1)!.toFixed(1)}`,
        "",
      ],
      ["agent RSS MB (median, max)", `${med(rss).toFixed(0)}, ${rss.at(-1)!.toFixed(0)}`, ""],
    ]);
    note(
      `projection: per joining node, etcd serves ${(ranges / count).toFixed(1)} ranges and ${
        (txns / count).toFixed(1)
      } txns at start-up, holds ${(watchers / count).toFixed(1)} watchers; each join is one ` +
        `watch event to every other agent (N-1 deliveries).`,
    );
  } finally {
    lab.close();
    await labs.down(name);
  }
}
