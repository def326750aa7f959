import { assert, assertEquals, assertNotEquals } from "../tests/support/assert.ts";
import { ClusterIpam } from "./cluster.ts";
import { clusterContract } from "./cluster_contract.ts";
import { LocalStore } from "./local.ts";
import { MemoryStore } from "./memory.ts";
import type { Store, Txn } from "./store.ts";

clusterContract("memory", () => Promise.resolve(new MemoryStore()));

const dirs: string[] = [];
clusterContract("local", async () => {
  const d = await Deno.makeTempDir({ prefix: "ohnot-cluster-" });
  dirs.push(d);
  return new LocalStore(d, { durable: false });
});
globalThis.addEventListener("unload", () => {
  for (const d of dirs) {
    try {
      Deno.removeSync(d, { recursive: true });
    } catch {
      // gone
    }
  }
});

/**
 * A memory store that, like etcd, has no lock (no `exclusive`). `arm(n)` makes the next
 * `n` commits wait for each other: their writers decided from one and the same view, and
 * only the store's compares can keep them apart.
 */
function racingStore(): Store & { arm(n: number): Promise<void> } {
  const inner = new MemoryStore();
  let gate: { left: number; open: () => void; opened: Promise<void> } | undefined;
  return {
    kind: "memory",
    location: "racing",
    get: (k) => inner.get(k),
    list: (p) => inner.list(p),
    revision: () => inner.revision(),
    async commit(txn: Txn) {
      const g = gate;
      if (g) {
        if (--g.left === 0) {
          gate = undefined;
          g.open();
        }
        await g.opened;
      }
      return inner.commit(txn);
    },
    arm(n) {
      let open = () => {};
      const opened = new Promise<void>((r) => open = r);
      gate = { left: n, open, opened };
      return opened;
    },
    close: () => inner.close(),
    [Symbol.asyncDispose]: () => inner.close(),
  };
}

Deno.test("cluster IPAM without a store lock: two allocations decided from one view get different addresses (compare-and-create)", async () => {
  const store = racingStore();
  const admin = new ClusterIpam(store);
  await admin.addPool("10.250.0.0/16");
  await admin.claimBlocks("node-r");
  // Two agents' IPAM (separate instances: no in-process queue between them) for one node.
  const bothHeld = store.arm(2);
  const [a, b] = await Promise.all([
    new ClusterIpam(store).allocate({ node: "node-r", containerID: "ra", ifname: "eth0" }),
    new ClusterIpam(store).allocate({ node: "node-r", containerID: "rb", ifname: "eth0" }),
  ]);
  await bothHeld; // both first commits reached the store before either was applied
  assertNotEquals(a[0]!.ip, b[0]!.ip);
  const rows = await admin.list();
  assertEquals(
    rows.map((r) => `${r.ip} ${r.containerID}`).sort(),
    [`${a[0]!.ip} ra`, `${b[0]!.ip} rb`].sort(),
  );
  const check = await admin.check();
  assert(check.ok, JSON.stringify(check));
});
