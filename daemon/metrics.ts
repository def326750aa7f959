/**
 * A tiny Prometheus registry (counters, gauges, histograms with labels) and the node
 * agent's metric set. Rendered in the Prometheus text format 0.0.4 by `/metrics`.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const r = new Registry();
 * const fails = r.counter("ohno_ipam_allocation_failures_total", "Failed allocations.", ["reason"]);
 * fails.inc({ reason: "exhausted" });
 * r.render(); // "# HELP ohno_ipam_allocation_failures_total Failed allocations.\n…"
 * ```
 * @module
 */

import { OHNO_VERSION } from "../lib/version.ts";
import type { GroupEvent } from "../ipam/cluster.ts";
import type { IpamServerEvent } from "./ipamserver.ts";
import type { ReconcileReport } from "./routing/types.ts";

type Labels = Record<string, string>;

const METRIC_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function escapeHelp(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

/** A sample value as Prometheus writes it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelText(names: readonly string[], values: readonly string[], extra?: [string, string]) {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i]!)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!METRIC_RE.test(name)) throw new TypeError(`bad metric name ${JSON.stringify(name)}`);
    for (const l of labelNames) {
      if (!LABEL_RE.test(l) || l.startsWith("__") || l === "le") {
        throw new TypeError(`bad label name ${JSON.stringify(l)} for ${name}`);
      }
    }
  }

  abstract readonly type: "counter" | "gauge" | "histogram";

  /** The label values in declared order; throws when the labels do not match. */
  protected values(labels: Labels | undefined): string[] {
    const given = Object.keys(labels ?? {});
    if (
      given.length !== this.labelNames.length || !given.every((k) => this.labelNames.includes(k))
    ) {
      throw new TypeError(
        `${this.name} takes labels [${this.labelNames.join(", ")}], got [${given.join(", ")}]`,
      );
    }
    return this.labelNames.map((n) => String(labels![n]));
  }

  abstract samples(): string[];

  render(): string {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`]
      .concat(this.samples()).join("\n") + "\n";
  }
}

/** One number per label set: what counters and gauges share. */
abstract class ValueMetric extends Metric {
  readonly #values = new Map<string, { labels: string[]; value: number }>();

  get(labels?: Labels): number {
    return this.#values.get(JSON.stringify(this.values(labels)))?.value ?? 0;
  }

  /** Forgets every label set (a set of series that is replaced as a whole, e.g. sessions). */
  clear(): void {
    this.#values.clear();
  }

  protected put(value: number, labels?: Labels): void {
    const v = this.values(labels);
    this.#values.set(JSON.stringify(v), { labels: v, value });
  }

  samples(): string[] {
    // A metric without labels shows 0 before its first update.
    if (this.#values.size === 0 && this.labelNames.length === 0) return [`${this.name} 0`];
    return [...this.#values.values()].map((s) =>
      `${this.name}${labelText(this.labelNames, s.labels)} ${formatValue(s.value)}`
    );
  }
}

/** A value that only goes up. */
export class Counter extends ValueMetric {
  readonly type = "counter";

  inc(labels?: Labels, by = 1): void {
    if (by < 0 || !Number.isFinite(by)) throw new RangeError(`${this.name}: cannot add ${by}`);
    this.put(this.get(labels) + by, labels);
  }
}

/** A value that goes up and down. */
export class Gauge extends ValueMetric {
  readonly type = "gauge";

  set(value: number, labels?: Labels): void {
    this.put(value, labels);
  }

  inc(labels?: Labels, by = 1): void {
    this.put(this.get(labels) + by, labels);
  }

  dec(labels?: Labels, by = 1): void {
    this.put(this.get(labels) - by, labels);
  }
}

/** Default buckets: 1 ms … 10 s, for latencies in seconds. */
const DEFAULT_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** Observations counted into cumulative buckets, with their sum and count. */
export class Histogram extends Metric {
  readonly type = "histogram";
  readonly buckets: readonly number[];
  readonly #series = new Map<
    string,
    { labels: string[]; counts: number[]; sum: number; count: number }
  >();

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    const b = [...buckets].sort((x, y) => x - y);
    if (b.length === 0 || b.some((x, i) => !Number.isFinite(x) || (i > 0 && x === b[i - 1]))) {
      throw new RangeError(`${name}: buckets must be distinct finite numbers`);
    }
    this.buckets = b;
  }

  observe(value: number, labels?: Labels): void {
    const v = this.values(labels);
    const key = JSON.stringify(v);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: v, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** Count and sum of one series (for tests and status). */
  get(labels?: Labels): { count: number; sum: number } {
    const s = this.#series.get(JSON.stringify(this.values(labels)));
    return { count: s?.count ?? 0, sum: s?.sum ?? 0 };
  }

  samples(): string[] {
    const series = [...this.#series.values()];
    if (series.length === 0 && this.labelNames.length === 0) {
      series.push({ labels: [], counts: this.buckets.map(() => 0), sum: 0, count: 0 });
    }
    const out: string[] = [];
    for (const s of series) {
      this.buckets.forEach((b, i) => {
        out.push(
          `${this.name}_bucket${labelText(this.labelNames, s.labels, ["le", formatValue(b)])} ${
            s.counts[i]
          }`,
        );
      });
      out.push(
        `${this.name}_bucket${labelText(this.labelNames, s.labels, ["le", "+Inf"])} ${s.count}`,
      );
      out.push(`${this.name}_sum${labelText(this.labelNames, s.labels)} ${formatValue(s.sum)}`);
      out.push(`${this.name}_count${labelText(this.labelNames, s.labels)} ${s.count}`);
    }
    return out;
  }
}

/** A set of metrics rendered together. */
export class Registry {
  readonly #metrics = new Map<string, Metric>();

  #add<M extends Metric>(m: M): M {
    if (this.#metrics.has(m.name)) throw new TypeError(`metric ${m.name} is registered twice`);
    this.#metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames));
  }

  histogram(
    name: string,
    help: string,
    opts: { labelNames?: readonly string[]; buckets?: readonly number[] } = {},
  ): Histogram {
    return this.#add(
      new Histogram(name, help, opts.labelNames ?? [], opts.buckets ?? DEFAULT_BUCKETS),
    );
  }

  /** The whole registry in the Prometheus text format. */
  render(): string {
    return [...this.#metrics.values()].map((m) => m.render()).join("");
  }
}

/** The content type of {@link Registry.render}'s output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * The node agent's metrics, in `/metrics` order: per field of {@link DaemonMetrics}, its
 * kind, name, help and label names.
 */
const DAEMON_METRICS = {
  /** Addresses handed out (one per address, so a dual-stack pod counts 2). */
  allocations: ["counter", "ohno_ipam_allocations_total", "Addresses allocated to pods."],
  /** Addresses given back. */
  releases: ["counter", "ohno_ipam_releases_total", "Addresses released."],
  /** Failed allocation requests, by reason (`exhausted`, `etcd-unavailable`, `invalid`, …). */
  allocationFailures: [
    "counter",
    "ohno_ipam_allocation_failures_total",
    "Allocation requests that failed, by reason.",
    ["reason"],
  ],
  /** Addresses this node holds now. */
  allocatedAddresses: ["gauge", "ohno_ipam_allocated_addresses", "Addresses this node holds now."],
  /** IPAM socket request latency, by operation (`allocate`, `release`, …). */
  ipamRequestSeconds: [
    "histogram",
    "ohno_ipam_request_duration_seconds",
    "Time to answer one IPAM socket request, by operation.",
    ["op"],
  ],
  /** Routes the backend owns in the kernel, by family. */
  routesProgrammed: [
    "gauge",
    "ohno_routes_programmed",
    "Routes to other nodes' blocks that ohno owns in the kernel, by family.",
    ["backend", "family"],
  ],
  /** Route changes made, by operation (`add`, `replace`, `delete`) and failures (`failed`). */
  routeChanges: [
    "counter",
    "ohno_route_changes_total",
    "Route changes made by reconciles, by operation; failed = refused by the kernel.",
    ["op"],
  ],
  /** Reconciles, by result (`ok`, `error`). */
  reconciles: ["counter", "ohno_route_reconciles_total", "Route reconciles, by result.", [
    "result",
  ]],
  reconcileSeconds: [
    "histogram",
    "ohno_route_reconcile_duration_seconds",
    "Time of one full route reconcile.",
  ],
  /**
   * Wanted routes not programmed: skipped blocks, foreign conflicts and routes the kernel
   * refused (last reconcile).
   */
  routesNotProgrammed: [
    "gauge",
    "ohno_routes_not_programmed",
    "Peer blocks without a route after the last reconcile (skipped, held by a foreign route, or refused by the kernel).",
  ],
  /** Peers whose next hop the kernel refused as off-link (host-gw across subnets). */
  unreachableNextHops: [
    "gauge",
    "ohno_route_unreachable_next_hops",
    "Peers whose next hop is not on a link of this node (host-gw across subnets), last reconcile.",
  ],
  /** vxlan: peers whose published VNI or UDP port differ from this node's (not tunnelled to). */
  vxlanPeerMismatches: [
    "gauge",
    "ohno_vxlan_peer_mismatches",
    "vxlan: peers whose published VXLAN VNI or UDP port differ from this node's (no tunnel to them), last reconcile.",
  ],
  /** etcd errors, by operation (`txn`, `get`, `watch`, …). */
  etcdErrors: ["counter", "ohno_etcd_errors_total", "etcd requests that failed, by operation.", [
    "op",
  ]],
  /** Transactions that committed a group of this node's allocations (ipam/cluster/group.ts). */
  ipamGroupCommits: [
    "counter",
    "ohno_ipam_group_commits_total",
    "Transactions that committed a group of this node's allocations.",
  ],
  /** Allocation requests those transactions carried (÷ commits: the group size). */
  ipamGroupedRequests: [
    "counter",
    "ohno_ipam_grouped_requests_total",
    "Allocation requests committed in groups (divided by the commits: the mean group size).",
  ],
  /** Group commits that lost a compare: the cached node state was stale and read again. */
  ipamGroupConflicts: [
    "counter",
    "ohno_ipam_group_conflicts_total",
    "Group commits that lost a compare: the agent's cached node state was out of date and " +
    "was read again.",
  ],
  /** Requests made to the datastore, by operation (`get`, `list`, `revision`, `txn`, `watch`). */
  datastoreRequests: [
    "counter",
    "ohno_datastore_requests_total",
    "Requests made to the datastore (etcd), by operation.",
    ["op"],
  ],
  /** Full lists of the cluster's nodes and blocks by the peer watch (first, and per reset). */
  peerLists: [
    "counter",
    "ohno_peer_lists_total",
    "Full lists of the cluster's nodes and blocks by the peer watch (the first, and one per watch reset).",
  ],
  /** Node and block changes the peer watch applied to its view. */
  peerEvents: [
    "counter",
    "ohno_peer_events_total",
    "Node and block changes the peer watch applied to its in-memory view.",
  ],
  /** Nodes routed to (the peer set's size). */
  peers: ["gauge", "ohno_peers", "Other nodes the agent routes to."],
  /** Kubernetes API errors, by operation. */
  kubeErrors: [
    "counter",
    "ohno_kubernetes_errors_total",
    "Kubernetes API requests that failed, by operation.",
    ["op"],
  ],
  /** 1 while another network configuration sorts before ohno's conflist. */
  conflistShadowed: [
    "gauge",
    "ohno_conflist_shadowed",
    "1 while another network configuration sorts before ohno's in the CNI conf dir (runtimes " +
    "use the first).",
  ],
  /** 1 when the agent is ready. */
  ready: ["gauge", "ohno_ready", "1 when the agent is ready (IPAM served, routes programmed)."],
  buildInfo: ["gauge", "ohno_build_info", "ohno's version and backend; always 1.", [
    "version",
    "backend",
  ]],
} as const satisfies Record<
  string,
  readonly [
    kind: "counter" | "gauge" | "histogram",
    name: string,
    help: string,
    labels?: readonly string[],
  ]
>;

type MetricOf<S> = S extends readonly ["counter", ...unknown[]] ? Counter
  : S extends readonly ["gauge", ...unknown[]] ? Gauge
  : Histogram;

/** The metric fields of {@link DaemonMetrics}, one per {@link DAEMON_METRICS} entry. */
type DaemonMetricFields = {
  readonly [K in keyof typeof DAEMON_METRICS]: MetricOf<typeof DAEMON_METRICS[K]>;
};

// The class gets its metric fields from DAEMON_METRICS (declaration merging).
export interface DaemonMetrics extends DaemonMetricFields {}

/**
 * The node agent's metrics ({@link DAEMON_METRICS}). The IPAM server, the etcd store and
 * the routing loop update them; `/metrics` renders {@link DaemonMetrics.registry}.
 */
export class DaemonMetrics {
  readonly registry: Registry = new Registry();

  constructor(opts: { backend?: string } = {}) {
    for (const [field, [kind, name, help, labelNames = []]] of Object.entries(DAEMON_METRICS)) {
      const metric = kind === "histogram"
        ? this.registry.histogram(name, help, { labelNames })
        : this.registry[kind](name, help, labelNames);
      Object.defineProperty(this, field, { value: metric, enumerable: true });
    }
    this.#backend = opts.backend ?? "host-gw";
    this.buildInfo.set(1, { version: OHNO_VERSION, backend: this.#backend });
  }

  readonly #backend: string;

  /** Feeds the allocators' group events (ClusterIpam `onGroup`). */
  observeGroup = (e: GroupEvent): void => {
    if (e.kind === "commit") {
      this.ipamGroupCommits.inc();
      this.ipamGroupedRequests.inc({}, e.requests);
    } else this.ipamGroupConflicts.inc();
  };

  /**
   * Feeds one IPAM socket request into the metrics: pass as the server's `observe`.
   * Counts addresses, not requests: a dual-stack allocation is 2, a release that freed
   * nothing is 0; the gauge of held addresses follows every allocate, release and GC.
   */
  observeIpam = (e: IpamServerEvent, opts: { starting?: boolean } = {}): void => {
    this.ipamRequestSeconds.observe(e.ms / 1000, { op: e.op });
    if (!e.ok) {
      if (e.op === "allocate") this.allocationFailures.inc({ reason: e.reason ?? "internal" });
      if (e.reason === "not-ready" && !opts.starting) this.etcdErrors.inc({ op: e.op });
      return;
    }
    const n = e.addresses ?? 0;
    if (e.op === "allocate") this.allocated(n);
    if (e.op === "release" || e.op === "gc") this.released(n);
  };

  /** `n` addresses given out on this node. */
  allocated(n: number): void {
    this.allocations.inc({}, n);
    this.allocatedAddresses.inc({}, n);
  }

  /** `n` addresses of this node freed (by a release or a GC). */
  released(n: number): void {
    this.releases.inc({}, n);
    this.allocatedAddresses.dec({}, n);
  }

  /** Feeds one reconcile into the metrics: pass as `RouteSync`'s `onReconcile`. */
  observeReconcile = (
    result: { report?: ReconcileReport; error?: unknown; seconds: number },
  ): void => {
    this.reconcileSeconds.observe(result.seconds);
    const r = result.report;
    if (!r) {
      this.reconciles.inc({ result: "error" });
      return;
    }
    this.reconciles.inc({ result: "ok" });
    for (const fam of [4, 6] as const) {
      this.routesProgrammed.set(r.programmed[fam], { backend: this.#backend, family: `ipv${fam}` });
    }
    if (r.added.length) this.routeChanges.inc({ op: "add" }, r.added.length);
    if (r.replaced.length) this.routeChanges.inc({ op: "replace" }, r.replaced.length);
    if (r.deleted.length) this.routeChanges.inc({ op: "delete" }, r.deleted.length);
    if (r.failed.length) this.routeChanges.inc({ op: "failed" }, r.failed.length);
    const refused = r.failed.filter((f) => f.op === "replace");
    this.routesNotProgrammed.set(r.skipped.length + r.conflicts.length + refused.length);
    this.unreachableNextHops.set(
      new Set(
        refused.filter((f) => f.reason === "next-hop-unreachable").map((f) => f.node ?? f.via),
      )
        .size,
    );
    if (r.vxlan) this.vxlanPeerMismatches.set(r.vxlan.mismatches.length);
  };
}
