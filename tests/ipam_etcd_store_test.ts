/**
 * The etcd store against a real etcd: the shared Store contract, bounded failure when
 * etcd is down (both stores, gRPC and JSON gateway), recovery when it is back, and TLS
 * (good and wrong CA).
 */
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import { within } from "./support/wait.ts";
import { storeContract } from "../ipam/store_contract.ts";
import { EtcdStore } from "../ipam/etcd.ts";
import { EtcdHttpStore } from "../ipam/etcdhttp.ts";
import { StoreRequestError, StoreUnavailableError } from "../ipam/store.ts";
import { type EtcdFixture, etcdMissing, silentEndpoint, startEtcd } from "./support/etcd.ts";
import { openDatastore } from "../daemon/datastore.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const opts = { sanitizeOps: false, sanitizeResources: false, ignore: !!missing };

let shared: EtcdFixture | undefined;
storeContract("etcd", async () => {
  shared ??= await startEtcd();
  const s = new EtcdStore({ endpoints: shared.endpoints });
  await s.commit({ mutations: [{ deletePrefix: "/" }] }); // a fresh store for every case
  return s;
}, {
  ...(missing ? { skip: missing } : {}),
  teardown: async () => await shared?.[Symbol.asyncDispose](),
});

Deno.test({
  ...opts,
  name: `etcd store: killed etcd fails calls fast and clearly; restarted etcd works again${skip}`,
  async fn() {
    await using etcd = await startEtcd();
    await using s = new EtcdStore({
      endpoints: etcd.endpoints,
      requestTimeoutMs: 2000,
      dialTimeoutMs: 1000,
    });
    assert((await s.commit({ mutations: [{ put: "/k", value: "1" }] })).ok);
    await etcd.kill();
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const e = await assertRejects(() => s.get("/k"), StoreUnavailableError);
      assert(e.message.includes(etcd.endpoints[0]!), e.message);
      assert(performance.now() - t0 < 4000, "bounded by the request timeout");
    }
    await etcd.restart();
    // The client recovers by itself (its breaker half-opens within 5 s).
    await within(
      10_000,
      "nothing lost across the restart",
      async () => (await s.get("/k").catch(() => undefined))?.value === "1",
    );
  },
});

Deno.test({
  ...opts,
  name:
    `etcd store: an endpoint nobody listens on is StoreUnavailableError within the dial timeout${skip}`,
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    await using s = new EtcdStore({
      endpoints: [`http://127.0.0.1:${port}`],
      dialTimeoutMs: 1000,
      requestTimeoutMs: 1500,
    });
    const t0 = performance.now();
    await assertRejects(() => s.list("/"), StoreUnavailableError, "unavailable");
    assert(performance.now() - t0 < 4000);
  },
});

Deno.test({
  ...opts,
  name: `etcd store: TLS with client certificates works; a wrong CA is refused clearly${skip}`,
  async fn() {
    await using etcd = await startEtcd({ tls: true });
    const t = etcd.tls!;
    await using good = new EtcdStore({
      endpoints: etcd.endpoints,
      ca: t.ca,
      cert: t.clientCert,
      key: t.clientKey,
    });
    assert((await good.commit({ mutations: [{ put: "/tls", value: "yes" }] })).ok);
    assertEquals((await good.get("/tls"))?.value, "yes");
    await using bad = new EtcdStore({
      endpoints: etcd.endpoints,
      ca: t.otherCa,
      cert: t.clientCert,
      key: t.clientKey,
      requestTimeoutMs: 2000,
    });
    const e = await assertRejects(() => bad.get("/tls"), StoreUnavailableError);
    assert(/unavailable/.test(e.message), e.message);
    await assertRejects(
      () =>
        Promise.resolve().then(() =>
          new EtcdStore({ endpoints: etcd.endpoints, ca: "/nonexistent/ca.pem" })
        ),
      StoreUnavailableError,
      "/nonexistent/ca.pem",
    );
  },
});

Deno.test({
  ...opts,
  name:
    `etcd store: a request etcd refuses (too large) is that request's error and opens no breaker${skip}`,
  async fn() {
    await using etcd = await startEtcd();
    await using s = new EtcdStore({ endpoints: etcd.endpoints });
    assert((await s.commit({ mutations: [{ put: "/k", value: "1" }] })).ok);
    // Over gRPC's message limit (resource exhausted) and over etcd's request limit
    // (invalid argument), each more often than the breaker's three consecutive failures.
    const errors: unknown[] = [];
    for (const size of [3 * 1024 * 1024, 1600 * 1024]) {
      for (let i = 0; i < 4; i++) {
        errors.push(
          await s.commit({ mutations: [{ put: "/big", value: "x".repeat(size) }] }).then(
            () => new Error("a too large commit succeeded"),
            (e) => e,
          ),
        );
      }
    }
    // No breaker opened: the next calls go through at once.
    assertEquals((await s.get("/k"))?.value, "1");
    assert((await s.commit({ mutations: [{ put: "/k", value: "2" }] })).ok);
    for (const e of errors) {
      assert(e instanceof StoreRequestError, String(e));
      assert(e.message.includes("refused the request (commit)"), e.message);
    }
    assertEquals(await s.get("/big"), undefined);
  },
});

// Both etcd stores (gRPC, the agent's; the JSON gateway, the CLI's) keep one contract for
// timeouts, in the same words.
const STORES = [["gRPC", EtcdStore], ["JSON gateway", EtcdHttpStore]] as const;

for (const [via, Cls] of STORES) {
  Deno.test({
    ...opts,
    name:
      `etcd store (${via}): a list longer than a page, or than gRPC's 4 MiB, has every key once, in order${skip}`,
    async fn() {
      await using etcd = await startEtcd();
      await using small = new Cls({ endpoints: etcd.endpoints, pageSize: 7 });
      // Keys around page edges, one of them not ASCII (pages continue after the raw bytes).
      const keys = Array.from({ length: 50 }, (_, i) => `/p/${String(i).padStart(3, "0")}`);
      keys.splice(20, 0, "/p/019ü");
      assert((await small.commit({ mutations: keys.map((k) => ({ put: k, value: k })) })).ok);
      assert((await small.commit({ mutations: [{ put: "/q/0", value: "other prefix" }] })).ok);
      const listed = await small.list("/p/");
      assertEquals(listed.map((kv) => kv.key), [...keys].sort());
      assertEquals(listed.map((kv) => kv.value), [...keys].sort());
      // 20,000 records of 250 bytes: 5.5 MB, one gRPC answer would be refused.
      const v = "x".repeat(250);
      for (let b = 0; b < 200; b++) {
        await small.commit({
          mutations: Array.from({ length: 100 }, (_, j) => ({
            put: `/big/${String(b * 100 + j).padStart(6, "0")}`,
            value: v,
          })),
        });
      }
      await using store = new Cls({ endpoints: etcd.endpoints });
      const big = await store.list("/big/");
      assertEquals(big.length, 20_000);
      assertEquals(new Set(big.map((kv) => kv.key)).size, 20_000);
      assertEquals(big.at(-1)!.key, "/big/019999");
    },
  });

  Deno.test({
    ...opts,
    name:
      `etcd store (${via}): a port that accepts and never answers fails at the dial timeout, naming it${skip}`,
    async fn() {
      await using silent = silentEndpoint();
      await using s = new Cls({
        endpoints: [silent.endpoint],
        dialTimeoutMs: 1000,
        requestTimeoutMs: 1500,
      });
      for (const what of ["list", "commit"] as const) {
        const e = await assertRejects(
          () =>
            what === "list" ? s.list("/") : s.commit({ mutations: [{ put: "/k", value: "v" }] }),
          StoreUnavailableError,
        );
        assertEquals(
          e.message,
          `etcd at ${silent.endpoint} is unavailable (${what}): it did not answer within 1 s ` +
            `(dial timeout: no connection that etcd answers)`,
        );
      }
      assert(silent.accepted() > 0, "the client did connect");
    },
  });

  Deno.test({
    ...opts,
    name: `etcd store (${via}): a stopped etcd fails at the request timeout, naming it${skip}`,
    async fn() {
      await using etcd = await startEtcd();
      await using s = new Cls({
        endpoints: etcd.endpoints,
        dialTimeoutMs: 1000,
        requestTimeoutMs: 1500,
      });
      assert((await s.commit({ mutations: [{ put: "/k", value: "1" }] })).ok);
      etcd.pause();
      try {
        const e = await assertRejects(() => s.get("/k"), StoreUnavailableError);
        assertEquals(
          e.message,
          `etcd at ${etcd.endpoints[0]} is unavailable (get): it did not answer within 1.5 s ` +
            `(request timeout)`,
        );
      } finally {
        etcd.resume();
      }
      await within(
        10_000,
        "answers again once etcd runs",
        async () => (await s.get("/k").catch(() => undefined))?.value === "1",
      );
    },
  });
}

Deno.test({
  ...opts,
  name: `etcd store: the timeouts are the documented 3 s to connect and 5 s to answer${skip}`,
  async fn() {
    await using s = new EtcdStore({ endpoints: ["http://127.0.0.1:2379"] });
    assertEquals([s.dialTimeoutMs, s.requestTimeoutMs], [3000, 5000]);
    const schema = await Deno.readTextFile(new URL("../ipam/SCHEMA.md", import.meta.url));
    assert(/dial timeout 3 s, request timeout 5 s/.test(schema.replace(/\s+/g, " ")));
    // What the CLI and the agent open: the same defaults.
    await using viaConfig = await openDatastore({
      type: "etcd",
      dataDir: "/nonexistent",
      etcd: { endpoints: ["http://127.0.0.1:2379"] },
    });
    const opened = viaConfig as EtcdStore;
    assertEquals([opened.dialTimeoutMs, opened.requestTimeoutMs], [3000, 5000]);
  },
});
