/**
 * The contract every Store passes (memory, local file, etcd). A store's test file calls
 * {@link storeContract} with a factory that returns a fresh, empty store.
 *
 * @example
 * ```ts ignore
 * storeContract("memory", () => Promise.resolve(new MemoryStore()));
 * ```
 * @module
 */

import { assert, assertEquals } from "../tests/support/assert.ts";
import { type ContractCase, contractSuite } from "../tests/support/contract.ts";
import { atomically, type Store, type WatchEvent } from "./store.ts";

export interface ContractOptions {
  /** Ignore every case (e.g. etcd-server is not installed), with the reason in the name. */
  skip?: string;
  /** Whether the store implements `watch` (the local file store does not). Default true. */
  watch?: boolean;
  /** Stops what the factory shared (a test etcd) after the last case; not a test. */
  teardown?: () => Promise<void>;
}

export function storeContract(
  name: string,
  make: () => Promise<Store>,
  opts: ContractOptions = {},
): void {
  const cases: ContractCase<Store>[] = [];
  const test = (title: string, fn: (s: Store) => Promise<void>) => cases.push({ title, fn });

  test("put, get and list in key order, with revisions", async (s) => {
    const r0 = await s.revision();
    const c1 = await s.commit({ mutations: [{ put: "/t/b", value: "2" }] });
    assert(c1.ok);
    assertEquals(c1.revision, r0 + 1);
    const c2 = await s.commit({
      mutations: [{ put: "/t/a", value: "1" }, { put: "/t/c/x", value: "3" }],
    });
    assertEquals(c2.revision, r0 + 2, "one commit raises the revision by one");
    assertEquals((await s.list("/t/")).map((kv) => kv.key), ["/t/a", "/t/b", "/t/c/x"]);
    assertEquals((await s.list("/t/c/")).map((kv) => kv.value), ["3"]);
    assertEquals(await s.list("/nothing/"), []);
    const a = await s.get("/t/a");
    assertEquals(a?.value, "1");
    assertEquals(a?.modRevision, r0 + 2);
    assertEquals(a?.createRevision, r0 + 2);
    await s.commit({ mutations: [{ put: "/t/a", value: "1b" }] });
    const a2 = await s.get("/t/a");
    assertEquals(a2?.createRevision, r0 + 2);
    assertEquals(a2?.modRevision, r0 + 3);
    assertEquals(await s.get("/t/missing"), undefined);
    assertEquals(await s.revision(), r0 + 3);
  });

  test("create-if-absent lets exactly one writer win", async (s) => {
    const txn = (v: string) => ({
      compare: [{ key: "/c/k", absent: true as const }],
      mutations: [{ put: "/c/k", value: v }],
    });
    assert((await s.commit(txn("first"))).ok);
    const second = await s.commit(txn("second"));
    assert(!second.ok);
    assertEquals((await s.get("/c/k"))?.value, "first");
  });

  test("concurrent create-if-absent: one winner among 16", async (s) => {
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        s.commit({
          compare: [{ key: "/race/k", absent: true }],
          mutations: [{ put: "/race/k", value: `w${i}` }, { put: `/race/by/w${i}`, value: "x" }],
        })),
    );
    assertEquals(results.filter((r) => r.ok).length, 1);
    const winner = (await s.get("/race/k"))!.value;
    assertEquals((await s.list("/race/by/")).map((kv) => kv.key), [`/race/by/${winner}`]);
  });

  test("delete-if-unchanged fails after another write", async (s) => {
    await s.commit({ mutations: [{ put: "/d/k", value: "v1" }] });
    const seen = (await s.get("/d/k"))!;
    await s.commit({ mutations: [{ put: "/d/k", value: "v2" }] });
    const stale = await s.commit({
      compare: [{ key: "/d/k", modRevision: seen.modRevision }],
      mutations: [{ delete: "/d/k" }],
    });
    assert(!stale.ok);
    assertEquals((await s.get("/d/k"))?.value, "v2");
    const fresh = (await s.get("/d/k"))!;
    assert(
      (await s.commit({
        compare: [{ key: "/d/k", modRevision: fresh.modRevision }],
        mutations: [{ delete: "/d/k" }],
      })).ok,
    );
    assertEquals(await s.get("/d/k"), undefined);
  });

  test("value compare, and a failed compare writes nothing at all", async (s) => {
    await s.commit({ mutations: [{ put: "/v/k", value: "a" }] });
    const before = await s.revision();
    const r = await s.commit({
      compare: [{ key: "/v/k", value: "b" }],
      mutations: [{ put: "/v/other", value: "x" }, { delete: "/v/k" }],
    });
    assert(!r.ok);
    assertEquals(await s.revision(), before);
    assertEquals(await s.get("/v/other"), undefined);
    assertEquals((await s.get("/v/k"))?.value, "a");
    assert(
      (await s.commit({
        compare: [{ key: "/v/k", value: "a" }],
        mutations: [{ put: "/v/k", value: "b" }],
      })).ok,
    );
  });

  test("deletePrefix removes exactly the keys under the prefix", async (s) => {
    await s.commit({
      mutations: [
        { put: "/p/a/1", value: "" },
        { put: "/p/a/2", value: "" },
        { put: "/p/ab", value: "" },
        { put: "/p/b/1", value: "" },
      ],
    });
    assert((await s.commit({ mutations: [{ deletePrefix: "/p/a/" }] })).ok);
    assertEquals((await s.list("/p/")).map((kv) => kv.key), ["/p/ab", "/p/b/1"]);
  });

  test("atomically: 20 concurrent read-modify-writes lose no update", async (s) => {
    await s.commit({ mutations: [{ put: "/n/counter", value: "0" }] });
    await Promise.all(Array.from({ length: 20 }, () =>
      atomically(s, async (r) => {
        const kv = (await r.get("/n/counter"))!;
        const next = String(Number(kv.value) + 1);
        return {
          txn: {
            compare: [{ key: kv.key, modRevision: kv.modRevision }],
            mutations: [{ put: kv.key, value: next }],
          },
          result: next,
        };
      }, { attempts: 200 })));
    assertEquals((await s.get("/n/counter"))?.value, "20");
  });

  test("values keep any text, including JSON and unicode", async (s) => {
    const v = JSON.stringify({ a: "ü ✓", n: [1, 2], nl: "x\ny" });
    await s.commit({ mutations: [{ put: "/u/k", value: v }] });
    assertEquals((await s.get("/u/k"))?.value, v);
  });

  if (opts.watch !== false) {
    test("watch delivers puts and deletes under the prefix, in order", async (s) => {
      assert(s.watch, "the store was declared to watch but has no watch()");
      const ac = new AbortController();
      const start = await s.revision();
      const got: WatchEvent[] = [];
      const done = (async () => {
        for await (const e of s.watch!("/w/", { afterRevision: start, signal: ac.signal })) {
          got.push(e);
          if (got.length === 3) break;
        }
      })();
      await s.commit({ mutations: [{ put: "/w/a", value: "1" }] });
      await s.commit({ mutations: [{ put: "/elsewhere", value: "x" }] });
      await s.commit({ mutations: [{ put: "/w/a", value: "2" }] });
      await s.commit({ mutations: [{ delete: "/w/a" }] });
      const timeout = setTimeout(() => ac.abort(), 5000);
      await done;
      clearTimeout(timeout);
      ac.abort();
      assertEquals(
        got.map((e) => e.type === "put" ? `put ${e.kv.key}=${e.kv.value}` : `${e.type}`),
        ["put /w/a=1", "put /w/a=2", "delete"],
      );
    });
  }
  contractSuite(`store contract (${name})`, make, cases, opts);
}
