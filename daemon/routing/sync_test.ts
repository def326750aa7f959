import { assert, assertEquals } from "../../tests/support/assert.ts";
import { RouteSync } from "./sync.ts";
import type { Backend, ReconcileReport, RoutingState } from "./types.ts";

const empty = (): ReconcileReport => ({
  added: [],
  replaced: [],
  deleted: [],
  unchanged: 0,
  conflicts: [],
  skipped: [],
  failed: [],
  programmed: { 4: 0, 6: 0 },
});

/** A backend that records what it was asked and fails the first `failures` times. */
class FakeBackend implements Backend {
  readonly type = "fake";
  readonly seen: RoutingState[] = [];
  constructor(public failures = 0, public delayMs = 0) {}
  async reconcile(state: RoutingState): Promise<ReconcileReport> {
    this.seen.push(structuredClone(state) as RoutingState);
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failures > 0) {
      this.failures--;
      throw new Error("kernel said no");
    }
    return empty();
  }
  cleanup(): Promise<number> {
    return Promise.resolve(0);
  }
}

const local = { node: "n1", ips: ["172.31.0.11"], blocks: ["10.244.1.0/24"] };
const peer = (n: number) => ({
  node: `n${n}`,
  ips: [`172.31.0.${10 + n}`],
  blocks: [`10.244.${n}.0/24`],
});
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await tick(5);
  }
}

Deno.test("route sync: a failed first reconcile is retried; synced resolves on the first success", async () => {
  const backend = new FakeBackend(2);
  const outcomes: string[] = [];
  const sync = new RouteSync({
    backend,
    local,
    peers: [peer(2)],
    retryMs: 10,
    resyncPeriodMs: 60_000,
    onReconcile: (r) => outcomes.push(r.report ? "ok" : "error"),
  });
  const stop = new AbortController();
  const running = sync.run(stop.signal);
  await sync.synced;
  assertEquals(outcomes, ["error", "error", "ok"]);
  assert(sync.lastSuccessAt !== undefined);
  stop.abort();
  await running;
});

Deno.test("route sync: events wake the loop at once; a burst during a reconcile is coalesced", async () => {
  const backend = new FakeBackend(0, 30);
  // No interval between reconciles here (the next test covers it): this one is about waking.
  const sync = new RouteSync({ backend, local, resyncPeriodMs: 60_000, minIntervalMs: 0 });
  const stop = new AbortController();
  const running = sync.run(stop.signal);
  await sync.synced;
  assertEquals(backend.seen.length, 1);
  // Five events while idle-then-busy: the first wakes the loop, the rest arrive during its
  // reconcile and are handled by exactly one more.
  sync.apply([{ type: "put", peer: peer(2) }]);
  await until("the first event's reconcile started", () => backend.seen.length === 2);
  for (const n of [3, 4, 5, 6]) sync.apply([{ type: "put", peer: peer(n) }]);
  await until("both reconciles", () => backend.seen.length >= 3);
  await tick(100);
  assertEquals(backend.seen.length, 3);
  assertEquals(backend.seen[2]!.peers.map((p) => p.node), ["n2", "n3", "n4", "n5", "n6"]);
  // An event that changes nothing does not wake it.
  sync.apply([{ type: "put", peer: peer(2) }]);
  await tick(80);
  assertEquals(backend.seen.length, 3);
  // The local node changing does.
  sync.setLocal({ ...local, blocks: [...local.blocks, "10.244.100.0/24"] });
  await until("local change", () => backend.seen.length === 4);
  assertEquals(backend.seen[3]!.local.blocks.length, 2);
  stop.abort();
  await running;
});

Deno.test("route sync: the resync period reconciles with no events; abort ends the loop promptly", async () => {
  const backend = new FakeBackend();
  const sync = new RouteSync({ backend, local, peers: [peer(2)], resyncPeriodMs: 40 });
  const stop = new AbortController();
  const running = sync.run(stop.signal);
  await until("periodic reconciles", () => backend.seen.length >= 4);
  const t0 = Date.now();
  stop.abort();
  await running;
  assert(Date.now() - t0 < 1000, "stops within a second");
  const n = backend.seen.length;
  await tick(100);
  assertEquals(backend.seen.length, n, "nothing after abort");
  // reconcile() can still be called directly, serialised with nothing running.
  await sync.reconcile();
  assertEquals(backend.seen.length, n + 1);
});

Deno.test("route sync: changes that keep coming are gathered, one reconcile per interval", async () => {
  const backend = new FakeBackend();
  const sync = new RouteSync({ backend, local, resyncPeriodMs: 60_000, minIntervalMs: 200 });
  const ac = new AbortController();
  const running = sync.run(ac.signal);
  await sync.synced;
  const first = backend.seen.length;
  // 100 joins, a change every few ms (the fake backend reconciles in no time, so without
  // the interval each change would be a reconcile of its own).
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) {
    sync.apply([{ type: "put", peer: peer(i + 10) }]);
    await tick(5);
  }
  const burst = performance.now() - t0;
  await until("the last change reconciled", () => backend.seen.at(-1)?.peers.length === 100);
  ac.abort();
  await running;
  const made = backend.seen.length - first;
  // The first change at once, then at most one per started 200 ms of the burst, and one
  // for its tail.
  const most = 2 + Math.ceil(burst / 200);
  assert(made >= 2 && made <= most, `${made} reconciles for 100 changes in ${burst} ms`);
  assert(made < 50, `${made} reconciles for 100 changes: not gathered`);
});
