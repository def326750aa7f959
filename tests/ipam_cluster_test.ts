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
import { runCommand } from "../netns/mod.ts";

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
 * A script allocating `n` attachments on `node` (or, with `forMs`, as many as fit in that
 * time), printing one JSON line per outcome.
 */
function allocScript(
  endpoints: string[],
  node: string,
  prefix: string,
  n: number,
  pauseMs = 0,
  forMs = 0,
) {
  return `
    import { ClusterIpam } from "${clusterMod}";
    import { EtcdStore } from "${etcdMod}";
    const store = new EtcdStore({ endpoints: ${
    JSON.stringify(endpoints)
  }, requestTimeoutMs: 2000, dialTimeoutMs: 1000 });
    const ipam = new ClusterIpam(store);
    const until = Date.now() + ${forMs};
    for (let i = 0; ${forMs} ? Date.now() < until : i < ${n}; i++) {
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

async function outcomes(child: Deno.ChildProcess) {
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  assert(out.success, new TextDecoder().decode(out.stderr));
  return text.trim().split("\n").filter(Boolean).map((l) =>
    JSON.parse(l) as { id: string; ok: boolean; ips?: string[]; error?: string; ms?: number }
  );
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
    const child = spawnScript(allocScript(etcd.endpoints, "node-k", "k", 0, 50, 10_000));
    await new Promise((r) => setTimeout(r, 1200));
    await etcd.kill();
    await new Promise((r) => setTimeout(r, 1200));
    await etcd.restart();
    const results = await outcomes(child);
    const ok = results.filter((r) => r.ok);
    const failed = results.filter((r) => !r.ok);
    assert(
      ok.length > 0 && failed.length > 0,
      `some before, some during: ${ok.length} ok, ${failed.length} failed`,
    );
    for (const f of failed) {
      assert(/unavailable|etcd/.test(f.error!), f.error);
      assert(f.ms! < 5000, `failed within the bound (${f.ms} ms)`);
    }
    // Allocations after the restart worked again.
    const lastFailed = results.findLastIndex((r) => !r.ok);
    assert(lastFailed < results.length - 1, "allocations succeeded after etcd came back");
    // Nothing lost: every success is stored. Nothing duplicated: no address twice.
    const rows = await ipam.list();
    const stored = new Set(rows.map((r) => r.containerID));
    for (const r of ok) assert(stored.has(r.id), `${r.id} was reported allocated and is stored`);
    assertEquals(new Set(rows.map((r) => r.ip)).size, rows.length);
    // A call that failed may still have committed (the answer was lost with etcd): that is
    // an attachment the caller will DEL or GC, never a duplicate.
    assert(stored.size <= ok.length + failed.length);
    assert((await ipam.check()).ok, JSON.stringify(await ipam.check()));
  },
});
