/**
 * The loop every routing backend shares (flannel's route network): it holds the peer
 * set, applies peer events from the datastore watch, and reconciles the backend at
 * start, after every change (coalesced) and every resync period, so routes deleted by
 * hand come back and routes of peers that vanished are removed.
 *
 * @example
 * ```ts ignore
 * const sync = new RouteSync({ backend: new HostGwBackend({ netns }), local, log });
 * sync.apply([{ type: "reset", peers }]);          // from the datastore
 * const running = sync.run(signal);                 // until SIGTERM
 * await sync.synced;                                // first reconcile done
 * await setNetworkAvailable(kube, node);           // now NetworkUnavailable=False
 * sync.apply([{ type: "delete", node: "node3" }]);  // a watch event
 * ```
 * @module
 */

import { sleep } from "../../lib/async.ts";
import type { Logger } from "../../lib/log.ts";
import { applyPeerEvents, type PeerEvent } from "./diff.ts";
import type { Backend, LocalNode, Peer, ReconcileReport, VxlanMismatch } from "./types.ts";

export interface RouteSyncOptions {
  backend: Backend;
  /** This node (its blocks are never routed to a peer). */
  local: LocalNode;
  /** The initial peers (more arrive with {@link RouteSync.apply}). */
  peers?: Peer[];
  /** Full reconcile period in ms (default 30 000). */
  resyncPeriodMs?: number;
  /** Wait after a failed reconcile before trying again, in ms (default 1000). */
  retryMs?: number;
  /**
   * Least time between the starts of two reconciles caused by changes, in ms (default
   * 250). A change after a quiet spell is reconciled at once; changes that keep coming (a
   * thousand nodes joining) are gathered into one reconcile per interval.
   */
  minIntervalMs?: number;
  log?: Logger;
  /** Called after every reconcile attempt (metrics): the report, or the error. */
  onReconcile?: (result: { report?: ReconcileReport; error?: unknown; seconds: number }) => void;
}

/** What the agent's `/status` says about routing: the last reconcile's problems. */
export interface RoutingStatus {
  backend: string;
  /** When the last reconcile completed (ISO time); absent before the first. */
  lastReconcile?: string;
  programmed?: { ipv4: number; ipv6: number };
  /** Next hops the kernel refused as not on a link of this node (host-gw across subnets). */
  unreachableNextHops: { node?: string; via?: string; dst: string }[];
  /** Peer blocks not routed, and why. */
  notRouted: { node: string; block: string; reason: string }[];
  /** vxlan: peers whose VNI or port differ from this node's. */
  vxlanMismatches: VxlanMismatch[];
}

/** Route changes in one reconcile up to which each is logged at info. */
const ROUTE_LINES_AT_INFO = 20;

/** Runs a backend against a changing peer set. */
export class RouteSync {
  readonly #backend: Backend;
  readonly #period: number;
  readonly #retry: number;
  readonly #minInterval: number;
  #lastStart = -Infinity;
  readonly #log: Logger | undefined;
  readonly #onReconcile: RouteSyncOptions["onReconcile"];
  #local: LocalNode;
  #peers: Map<string, Peer>;
  #dirty = true;
  #wake: (() => void) | undefined;
  #running: Promise<ReconcileReport> | undefined;
  #last: ReconcileReport | undefined;
  #lastOkAt: number | undefined;
  #lastAttemptAt: number | undefined;
  #warned = new Set<string>();
  #resolveSynced!: (r: ReconcileReport) => void;

  /** Resolves with the report of the first reconcile that completed. */
  readonly synced: Promise<ReconcileReport>;

  constructor(opts: RouteSyncOptions) {
    this.#backend = opts.backend;
    this.#local = structuredClone(opts.local);
    this.#peers = applyPeerEvents(new Map(), [{ type: "reset", peers: opts.peers ?? [] }]).peers;
    this.#period = opts.resyncPeriodMs ?? 30_000;
    this.#retry = opts.retryMs ?? 1000;
    this.#minInterval = opts.minIntervalMs ?? 250;
    this.#log = opts.log;
    this.#onReconcile = opts.onReconcile;
    this.synced = new Promise((r) => (this.#resolveSynced = r));
  }

  /** The peers as the loop sees them now. */
  get peers(): Peer[] {
    return [...this.#peers.values()];
  }

  get local(): LocalNode {
    return structuredClone(this.#local);
  }

  /** The last completed reconcile. */
  get lastReport(): ReconcileReport | undefined {
    return this.#last;
  }

  /**
   * When the last reconcile completed (`Date.now()` ms), for a liveness check such as
   * "no reconcile for 3 periods"; undefined before the first.
   */
  get lastSuccessAt(): number | undefined {
    return this.#lastOkAt;
  }

  /**
   * When the last reconcile started, failed or not (`Date.now()` ms): the loop's progress,
   * for the agent's liveness check. Undefined before the first.
   */
  get lastAttemptAt(): number | undefined {
    return this.#lastAttemptAt;
  }

  /** The routing part of the agent's `/status`, from the last reconcile. */
  status(): RoutingStatus {
    const r = this.#last;
    return {
      backend: this.#backend.type,
      ...(this.#lastOkAt ? { lastReconcile: new Date(this.#lastOkAt).toISOString() } : {}),
      ...(r ? { programmed: { ipv4: r.programmed[4], ipv6: r.programmed[6] } } : {}),
      unreachableNextHops: (r?.failed ?? []).filter((f) => f.reason === "next-hop-unreachable")
        .map((f) => ({
          ...(f.node ? { node: f.node } : {}),
          ...(f.via ? { via: f.via } : {}),
          dst: f.dst,
        })),
      notRouted: r?.skipped ?? [],
      vxlanMismatches: r?.vxlan?.mismatches ?? [],
    };
  }

  /** Applies datastore events; a change wakes the loop. */
  apply(events: PeerEvent[]): void {
    const r = applyPeerEvents(this.#peers, events);
    this.#peers = r.peers;
    if (r.changed) this.#kick();
  }

  /** Replaces this node's view of itself (a new block claimed, an address changed). */
  setLocal(local: LocalNode): void {
    this.#local = structuredClone(local);
    this.#kick();
  }

  /**
   * Reconciles now (also while {@link run} is running: calls are serialised, and a call
   * made during a reconcile waits for a fresh one).
   */
  async reconcile(): Promise<ReconcileReport> {
    while (this.#running) await this.#running.catch(() => {});
    this.#dirty = false;
    const started = performance.now();
    this.#lastStart = started;
    this.#lastAttemptAt = Date.now();
    const p = this.#backend.reconcile({ local: this.#local, peers: this.peers });
    this.#running = p;
    try {
      const report = await p;
      const seconds = (performance.now() - started) / 1000;
      this.#last = report;
      this.#lastOkAt = Date.now();
      this.#report(report);
      this.#onReconcile?.({ report, seconds });
      this.#resolveSynced(report);
      return report;
    } catch (e) {
      this.#onReconcile?.({ error: e, seconds: (performance.now() - started) / 1000 });
      throw e;
    } finally {
      this.#running = undefined;
    }
  }

  /**
   * Reconciles at once, then on every change and every resync period, until `signal`
   * aborts. A failed reconcile is logged and retried after `retryMs`; it never ends the
   * loop. Routes stay in the kernel when the loop ends (a restarted agent resyncs).
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let failed = false;
      try {
        await this.reconcile();
      } catch (e) {
        this.#log?.error("route reconcile failed", { backend: this.#backend.type, error: e });
        failed = true;
        this.#dirty = true;
      }
      if (failed || !this.#dirty) {
        await this.#sleep(failed ? this.#retry : this.#period, signal);
      }
      // Changes keep coming (a burst): gather them until the interval has passed.
      const wait = this.#lastStart + this.#minInterval - performance.now();
      if (!failed && this.#dirty && wait > 0) await sleep(wait, signal);
    }
  }

  #kick(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  /** Waits `ms`, or until a change or the signal. */
  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }

  #report(r: ReconcileReport): void {
    const log = this.#log;
    if (!log) return;
    // A line per route at info while few change; in a burst (a thousand nodes joining) one
    // summary at info and the lines at debug, so the log does not become the cost.
    const changes = r.added.length + r.replaced.length + r.deleted.length;
    const each = changes > ROUTE_LINES_AT_INFO ? log.debug.bind(log) : log.info.bind(log);
    if (changes > ROUTE_LINES_AT_INFO) {
      log.info("routes changed", {
        added: r.added.length,
        replaced: r.replaced.length,
        deleted: r.deleted.length,
      });
    }
    for (const a of r.added) each("route added", { dst: a.dst, via: a.via, node: a.node });
    for (const a of r.replaced) each("route replaced", { dst: a.dst, via: a.via, node: a.node });
    for (const d of r.deleted) each("route deleted", { dst: d.dst, via: d.via });
    for (const f of r.failed) log.error("route refused by the kernel", { ...f });
    // Skips and conflicts persist until someone fixes them: warn once per distinct cause.
    const now = new Set<string>();
    for (const s of r.skipped) {
      const key = `skip ${s.node} ${s.block} ${s.reason}`;
      now.add(key);
      if (!this.#warned.has(key)) log.warn("peer block not routed", { ...s });
    }
    for (const c of r.conflicts) {
      const key = `conflict ${c.route.dst} ${c.foreign.protocol}`;
      now.add(key);
      if (!this.#warned.has(key)) {
        log.warn("a route ohno does not own holds a peer block; left alone", {
          dst: c.route.dst,
          node: c.route.node,
          foreignVia: c.foreign.via,
          foreignProto: c.foreign.protocol,
        });
      }
    }
    this.#warned = now;
  }
}
