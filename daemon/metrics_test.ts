import { assertEquals, assertMatch, assertThrows } from "../tests/support/assert.ts";
import { DaemonMetrics, Registry } from "./metrics.ts";
import type { ReconcileReport } from "./routing/types.ts";

Deno.test("metrics: counters, gauges and histograms render in the Prometheus text format", () => {
  const r = new Registry();
  const c = r.counter("ohno_things_total", "Things.\nTwo lines \\ here.", ["reason"]);
  const g = r.gauge("ohno_level", "A level.");
  const h = r.histogram("ohno_wait_seconds", "Waits.", { buckets: [0.1, 1] });
  c.inc({ reason: "exhausted" });
  c.inc({ reason: 'say "hi"\n' }, 2);
  c.inc({ reason: "exhausted" }, 3);
  g.set(2.5);
  g.dec();
  h.observe(0.05);
  h.observe(0.5);
  h.observe(7);
  assertEquals(
    r.render(),
    [
      "# HELP ohno_things_total Things.\\nTwo lines \\\\ here.",
      "# TYPE ohno_things_total counter",
      'ohno_things_total{reason="exhausted"} 4',
      'ohno_things_total{reason="say \\"hi\\"\\n"} 2',
      "# HELP ohno_level A level.",
      "# TYPE ohno_level gauge",
      "ohno_level 1.5",
      "# HELP ohno_wait_seconds Waits.",
      "# TYPE ohno_wait_seconds histogram",
      'ohno_wait_seconds_bucket{le="0.1"} 1',
      'ohno_wait_seconds_bucket{le="1"} 2',
      'ohno_wait_seconds_bucket{le="+Inf"} 3',
      "ohno_wait_seconds_sum 7.55",
      "ohno_wait_seconds_count 3",
      "",
    ].join("\n"),
  );
  assertEquals(c.get({ reason: "exhausted" }), 4);
  assertEquals(h.get(), { count: 3, sum: 7.55 });
});

Deno.test("metrics: unlabelled metrics show 0 before their first change; labelled ones show nothing", () => {
  const r = new Registry();
  r.counter("a_total", "A.");
  r.counter("b_total", "B.", ["x"]);
  r.histogram("c_seconds", "C.", { buckets: [1] });
  assertEquals(
    r.render().split("\n").filter((l) => l && !l.startsWith("#")),
    [
      "a_total 0",
      'c_seconds_bucket{le="1"} 0',
      'c_seconds_bucket{le="+Inf"} 0',
      "c_seconds_sum 0",
      "c_seconds_count 0",
    ],
  );
});

Deno.test("metrics: bad names, labels and values are refused", () => {
  const r = new Registry();
  assertThrows(() => r.counter("0bad", "x"), TypeError, "bad metric name");
  assertThrows(() => r.counter("ok_total", "x", ["__reserved"]), TypeError, "bad label name");
  assertThrows(() => r.histogram("h", "x", { labelNames: ["le"] }), TypeError, "bad label name");
  const c = r.counter("c_total", "x", ["reason"]);
  assertThrows(() => c.inc(), TypeError, "takes labels [reason]");
  assertThrows(() => c.inc({ reason: "a", extra: "b" }), TypeError, "takes labels");
  assertThrows(() => c.inc({ reason: "a" }, -1), RangeError, "cannot add -1");
  assertThrows(() => r.counter("c_total", "again"), TypeError, "registered twice");
  assertThrows(() => r.histogram("h2", "x", { buckets: [1, 1] }), RangeError, "distinct");
});

Deno.test("metrics: the agent's set takes reconcile reports", () => {
  const m = new DaemonMetrics({ backend: "host-gw" });
  const report: ReconcileReport = {
    added: [{ family: 4, dst: "10.244.2.0/24", via: "172.31.0.12", node: "n2" }],
    replaced: [],
    deleted: [{ family: 6, dst: "fd10::/64", metric: 1024, protocol: "111" }],
    unchanged: 3,
    conflicts: [],
    skipped: [{ node: "n4", block: "fd10:4::/64", reason: "node has no IPv6 address" }],
    failed: [
      {
        op: "replace",
        dst: "10.244.9.0/24",
        node: "n9",
        via: "172.31.1.19",
        reason: "next-hop-unreachable",
        error: "next hop 172.31.1.19 (node n9) is not on a link of this node: …",
      },
      { op: "replace", dst: "fd10:9::/64", node: "n9", via: "fd00:1::19", error: "other" },
    ],
    programmed: { 4: 3, 6: 1 },
  };
  m.observeReconcile({ report, seconds: 0.004 });
  m.observeReconcile({ error: new Error("ip failed"), seconds: 0.001 });
  m.allocationFailures.inc({ reason: "exhausted" });
  const text = m.registry.render();
  for (
    const line of [
      'ohno_routes_programmed{backend="host-gw",family="ipv4"} 3',
      'ohno_routes_programmed{backend="host-gw",family="ipv6"} 1',
      'ohno_route_changes_total{op="add"} 1',
      'ohno_route_changes_total{op="delete"} 1',
      'ohno_route_changes_total{op="failed"} 2',
      'ohno_route_reconciles_total{result="ok"} 1',
      'ohno_route_reconciles_total{result="error"} 1',
      "ohno_route_reconcile_duration_seconds_count 2",
      // The skipped block and the two refused routes; n9 is one unreachable peer.
      "ohno_routes_not_programmed 3",
      "ohno_route_unreachable_next_hops 1",
      'ohno_ipam_allocation_failures_total{reason="exhausted"} 1',
      "ohno_ready 0",
    ]
  ) {
    assertMatch(
      text,
      new RegExp(`^${line.replace(/[{}()[\]+.*?^$|\\]/g, "\\$&")}$`, "m"),
      `missing: ${line}`,
    );
  }
  assertMatch(text, /^ohno_build_info\{version="[^"]+",backend="host-gw"\} 1$/m);
  // Every sample line is NAME{LABELS} VALUE.
  for (const l of text.split("\n").filter((x) => x && !x.startsWith("#"))) {
    assertMatch(
      l,
      /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$|^.* (\+Inf|NaN)$/,
    );
  }
});
