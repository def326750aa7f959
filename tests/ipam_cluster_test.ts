/**
 * Cluster IPAM on a real etcd: the cluster contract, 4 processes × 100 allocations at
 * once, and etcd killed in the middle of allocations.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { clusterContract } from "../ipam/cluster_contract.ts";
import { ClusterIpam } from "../ipam/cluster.ts";
import { EtcdStore } from "../ipam/etcd.ts";
import { type EtcdFixture, etcdMissing, startEtcd } from "./support/etcd.ts";
import { OHNO } from "./support/ohno.ts";
import { runCommand } from "../netns/netns.ts";
import { within } from "./support/wait.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const opts = { sanitizeOps: false, sanitizeResources: false, ignore: !!missing };

let shared: EtcdFixture | undefined;
clusterContract("etcd", async () => {
  shared ??= await startEtcd();
  const s = new EtcdStore({ endpoints: shared.endpoints });
  await s.commit({ mutations: [{ deletePrefix: "/" }] });
  return s;
}, {
  ...(missing ? { skip: missing } : {}),
  teardown: async () => await shared?.[Symbol.asyncDispose](),
});

const clusterMod = new URL("../ipam/cluster.ts", import.meta.url).href;
const etcdMod = new URL("../ipam/etcd.ts", import.meta.url).href;

/**
 * A script allocating `n` attachments on `node` one after another (or, with `stopFile`,
 * until that file exists), printing one JSON line per outcome.
 */
function allocScript(
  endpoints: string[],
  node: string,
  prefix: string,
  n: number,
  pauseMs = 0,
  stopFile = "",
) {
  return `
    import { ClusterIpam } from "${clusterMod}";
    import { EtcdStore } from "${etcdMod}";
    const store = new EtcdStore({ endpoints: ${
    JSON.stringify(endpoints)
  }, requestTimeoutMs: 2000, dialTimeoutMs: 1000 });
    const ipam = new ClusterIpam(store);
    const stopFile = ${JSON.stringify(stopFile)};
    const stopped = () => { try { Deno.statSync(stopFile); return true; } catch { return false; } };
    for (let i = 0; stopFile ? !stopped() : i < ${n}; i++) {
      const id = "${prefix}-" + i;
      const t0 = performance.now();
      try {
        const got = await ipam.allocate({ node: "${node}", containerID: id, ifname: "eth0" });
        console.log(JSON.stringify({ id, ok: true, ips: got.map((g) => g.ip) }));
      } catch (e) {
        console.log(JSON.stringify({ id, ok: false, error: String(e.message), ms: performance.now() - t0 }));
      }
      if (${pauseMs}) await new Promise((r) => setTimeout(r, ${pauseMs}));
    }
    await store.close();
    Deno.exit(0);
  `;
}

function spawnScript(script: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--no-prompt", "--cached-only", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

interface Outcome {
  id: string;
  ok: boolean;
  ips?: string[];
  error?: string;
  ms?: number;
}

async function outcomes(child: Deno.ChildProcess): Promise<Outcome[]> {
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  assert(out.success, new TextDecoder().decode(out.stderr));
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Outcome);
}

/** The outcomes as the script prints them (`seen` grows), and all of them at its exit. */
function followOutcomes(child: Deno.ChildProcess): { seen: Outcome[]; done: Promise<Outcome[]> } {
  const seen: Outcome[] = [];
  const done = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const l of lines) if (l.trim()) seen.push(JSON.parse(l) as Outcome);
    }
    const status = await child.status;
    const err = await new Response(child.stderr).text();
    assert(status.success, err);
    return seen;
  })();
  return { seen, done };
}

Deno.test({
  ...opts,
  name: `4 processes × 100 allocations on one etcd: 400 distinct addresses, check clean${skip}`,
  async fn() {
    await using etcd = await startEtcd();
    await using store = new EtcdStore({ endpoints: etcd.endpoints });
    const ipam = new ClusterIpam(store);
    await ipam.addPool("10.244.0.0/16");
    // All four on one node: they race for the same blocks, cursor and addresses, and
    // 400 addresses need a second /24 block, claimed while they race.
    const procs = [0, 1, 2, 3].map((p) =>
      spawnScript(allocScript(etcd.endpoints, "node-a", `p${p}`, 100))
    );
    const results = (await Promise.all(procs.map(outcomes))).flat();
    const failed = results.filter((r) => !r.ok);
    assertEquals(failed, []);
    const ips = results.flatMap((r) => r.ips!);
    assertEquals(ips.length, 400);
    assertEquals(new Set(ips).size, 400);
    assertEquals((await ipam.list()).length, 400);
    const check = await runCommand(undefined, OHNO, {
      args: ["ipam", "--etcd-endpoints", etcd.endpoints.join(","), "check"],
    });
    assertEquals(check.code, 0, check.stdout + check.stderr);
    assert(check.stdout.includes("consistent"), check.stdout);
  },
});

Deno.test({
  ...opts,
  name:
    `etcd killed mid-allocations: fast clear failures, then recovery with nothing lost or duplicated${skip}`,
  async fn() {
    await using etcd = await startEtcd();
    await using store = new EtcdStore({ endpoints: etcd.endpoints });
    const ipam = new ClusterIpam(store);
    await ipam.addPool("10.245.0.0/16");
    await ipam.addPool("fd00:245::/48");
    const stop = `${await Deno.makeTempDir({ prefix: "ohnot-kill-" })}/stop-allocating`;
    const child = spawnScript(allocScript(etcd.endpoints, "node-k", "k", 0, 50, stop));
    const run = followOutcomes(child);
    const { seen } = run;
    // Each phase waits on what it needs to see, not on the clock.
    await within(60_000, "allocations succeeding before the kill", () => seen.some((r) => r.ok));
    await etcd.kill();
    const killedAt = seen.length;
    await within(
      60_000,
      "allocations failing while etcd is down",
      () => seen.slice(killedAt).some((r) => !r.ok),
    );
    await etcd.restart();
    await within(60_000, "allocations succeeding again after the restart", () => {
      const lastFailed = seen.findLastIndex((r) => !r.ok);
      return seen.slice(lastFailed + 1).filter((r) => r.ok).length >= 3;
    });
    Deno.writeTextFileSync(stop, "");
    const results = await run.done;
    await Deno.remove(stop.replace(/\/[^/]*$/, ""), { recursive: true });
    const ok = results.filter((r) => r.ok);
    const failed = results.filter((r) => !r.ok);
    for (const f of failed) {
      assert(/unavailable|etcd/.test(f.error!), f.error);
      assert(f.ms! < 5000, `failed within the bound (${f.ms} ms)`);
    }
    // Nothing lost: every success is stored. Nothing duplicated: no address twice, and
    // each stored attachment holds one address per pool.
    const rows = await ipam.list();
    const byId = new Map<string, string[]>();
    for (const r of rows) byId.set(r.containerID, [...(byId.get(r.containerID) ?? []), r.ip]);
    for (const r of ok) assertEquals(byId.get(r.id)?.sort(), [...r.ips!].sort(), r.id);
    assertEquals(new Set(rows.map((r) => r.ip)).size, rows.length);
    // Nothing invented: beyond the successes, only a call in flight when etcd died or came
    // back (the script allocates one at a time: the first or the last failure) may have
    // committed with its answer lost: an attachment its caller will DEL or GC.
    const okIds = new Set(ok.map((r) => r.id));
    const extra = [...byId.keys()].filter((id) => !okIds.has(id));
    const edges = new Set([failed[0]!.id, failed.at(-1)!.id]);
    assert(
      extra.every((id) => edges.has(id)),
      `stored beyond the successes: ${extra} (failures at the edges: ${[...edges]})`,
    );
    assertEquals(byId.size, ok.length + extra.length);
    assert((await ipam.check()).ok, JSON.stringify(await ipam.check()));
  },
});
