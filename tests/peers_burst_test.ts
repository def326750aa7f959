/**
 * A burst of node changes costs a running agent a few reconciles and no re-list of the
 * cluster: 200 nodes join at once (as 200 agents starting together write their records
 * and block claims), then leave at once. Counted through the agent's own metrics.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { etcdMissing } from "./support/etcd.ts";
import { agentMetrics, fakeNode, fakeNodes } from "./support/fakenodes.ts";
import { testLab, within } from "./support/lab.ts";
import { labOpen } from "../lab/topology.ts";
import { type Netns, runCommand } from "../netns/netns.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const N = 200;
/** How long the watch stream must live unchanged: two request timeouts and some. */
const STREAM_WINDOW_MS = 12_000;
/** RouteSync's default minimum interval between two reconciles (daemon/routing/sync.ts). */
const MIN_INTERVAL_MS = 250;

/**
 * How many reconciles a burst that took `ms` to arrive may cost: one per minimum interval
 * while changes trickle in, plus the first and the last. On a quiet machine a burst of 200
 * arrives in about a second (5); a loaded machine stretches the arrival, not the rule. The
 * cap of N/4 keeps the claim that matters: far fewer reconciles than changes (3N).
 */
function reconcileBound(ms: number): number {
  return Math.min(N / 4, Math.max(5, Math.ceil(ms / MIN_INTERVAL_MS) + 2));
}

/** The counters this test reads, summed over their labels where it says so. */
function counters(m: Map<string, number>) {
  const sum = (prefix: string) =>
    [...m].filter(([k]) => k.startsWith(prefix)).reduce((n, [, v]) => n + v, 0);
  return {
    reconciles: sum("ohno_route_reconciles_total"),
    lists: m.get("ohno_peer_lists_total"),
    events: m.get("ohno_peer_events_total") ?? 0,
    storeLists: m.get('ohno_datastore_requests_total{op="list"}') ?? 0,
    peers: m.get("ohno_peers"),
  };
}

/** Watch streams etcd has started (its own metric), read inside the lab namespace. */
async function etcdWatchStreams(ns: Netns): Promise<number> {
  const r = await runCommand(ns, "curl", { args: ["-s", "http://127.0.0.1:2379/metrics"] });
  const line = r.stdout.split("\n").find((l) =>
    l.startsWith("grpc_server_started_total{") && l.includes('grpc_method="Watch"')
  );
  assert(line, "etcd reports the watch streams it started");
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

Deno.test({
  name:
    `agent: ${N} nodes joining and then leaving at once cost a few reconciles and no re-list${skip}`,
  ignore: !!missing,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A long resync period: every reconcile counted here is one the burst caused.
    await using t = await testLab({ nodes: 1, resyncPeriod: "10m" });
    using lab = labOpen(t.name);
    const node = t.node("node1");
    const before = counters(await agentMetrics(node));
    const watchStreams = () => etcdWatchStreams(lab.ns);
    const streamsBefore = await watchStreams();
    const streamsSince = Date.now();
    assertEquals(before.lists, 1, "the agent listed the cluster once at start-up");
    assertEquals(before.peers, 0);

    // Settled: the counters stop moving (two reads a second apart agree).
    const settle = async () => {
      let last = JSON.stringify(counters(await agentMetrics(node)));
      await within(30_000, "the agent settles", async () => {
        await new Promise((r) => setTimeout(r, 1000));
        const now = JSON.stringify(counters(await agentMetrics(node)));
        const same = now === last;
        last = now;
        return same;
      });
      return counters(await agentMetrics(node));
    };

    const joinStart = Date.now();
    await fakeNodes(lab.ns, "http://127.0.0.1:2379", "put", 0, N);
    await within(
      60_000,
      `routes to all ${N} new nodes on node1`,
      async () => (await t.routes("node1")).length === 2 * N,
    );
    const joinMs = Date.now() - joinStart;
    const joined = await settle();
    const sample = fakeNode(7);
    assert(
      (await t.routes("node1")).includes(`${sample.blocks[0]} via ${sample.ips[0]}`),
      "a joined node's block is routed through its address",
    );
    assertEquals(joined.peers, N);
    assertEquals(joined.events - before.events, 3 * N, "each record and block applied once");
    assertEquals(joined.lists, 1, "no re-list of the cluster for a burst");
    assertEquals(joined.storeLists, before.storeLists, "no etcd list request for a burst");
    const joinReconciles = joined.reconciles - before.reconciles;
    assert(
      joinReconciles >= 1 && joinReconciles <= reconcileBound(joinMs),
      `${joinReconciles} reconciles for joins that arrived over ${joinMs} ms`,
    );

    const leaveStart = Date.now();
    await fakeNodes(lab.ns, "http://127.0.0.1:2379", "delete", 0, N);
    await within(
      60_000,
      "routes to the departed nodes removed",
      async () => (await t.routes("node1")).length === 0,
    );
    const leaveMs = Date.now() - leaveStart;
    const left = await settle();
    assertEquals(left.peers, 0);
    assertEquals(left.lists, 1);
    assertEquals(left.storeLists, before.storeLists);
    // One watch stream all along: none ended and re-created. An absence needs time to show:
    // the window spans at least two of the 5 s request timeouts that once ended the stream.
    const window = STREAM_WINDOW_MS - (Date.now() - streamsSince);
    if (window > 0) await new Promise((r) => setTimeout(r, window));
    assertEquals(await watchStreams(), streamsBefore, "the agent's watch stream was re-created");
    const leaveReconciles = left.reconciles - joined.reconciles;
    assert(
      leaveReconciles >= 1 && leaveReconciles <= reconcileBound(leaveMs),
      `${leaveReconciles} reconciles for departures that arrived over ${leaveMs} ms`,
    );
  },
});

Deno.test({
  name:
    `agent: cut off from etcd while nodes join and etcd compacts and restarts, it lists once more and routes them${skip}`,
  ignore: !!missing,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using t = await testLab({ nodes: 1, resyncPeriod: "10m" });
    using lab = labOpen(t.name);
    const node = t.node("node1");
    const etcd = "http://127.0.0.1:2379";
    await fakeNodes(lab.ns, etcd, "put", 0, 5);
    await within(
      30_000,
      "routes to the first 5 nodes",
      async () => (await t.routes("node1")).length === 10,
    );
    const nft = async (script: string) => {
      const r = await runCommand(node, "nft", { args: ["-f", "-"], stdinText: script });
      assertEquals(r.code, 0, r.stderr);
    };
    // The partition: node1 answers etcd's packets with a reset, so etcd drops the
    // connection and nothing written meanwhile reaches the agent on it.
    await nft(
      "table inet ohnotest { chain in { type filter hook input priority 0; " +
        "tcp sport 2379 reject with tcp reset; }; }",
    );
    try {
      await fakeNodes(lab.ns, etcd, "put", 5, 10);
      const st = await runCommand(lab.ns, "etcdctl", {
        args: ["--endpoints", etcd, "endpoint", "status", "-w", "json"],
      });
      const rev = JSON.parse(st.stdout)[0].Status.header.revision;
      const c = await runCommand(lab.ns, "etcdctl", {
        args: ["--endpoints", etcd, "compact", String(rev)],
      });
      assertEquals(c.code, 0, c.stderr);
      await t.lab.etcdStop(t.name);
      await t.lab.etcdStart(t.name);
    } finally {
      await nft("delete table inet ohnotest");
    }
    await within(
      60_000,
      "routes to the 5 nodes that joined during the partition",
      async () => (await t.routes("node1")).length === 20,
    );
    const m = counters(await agentMetrics(node));
    assert((m.lists ?? 0) >= 2, `the agent listed the cluster again (${m.lists} lists)`);
    assert((m.lists ?? 0) <= 4, `${m.lists} lists for one lost watch`);
  },
});
