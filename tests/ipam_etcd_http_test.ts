/**
 * The etcd store over etcd's JSON gateway (ipam/etcdhttp.ts), the admin CLI's, against a
 * real etcd: the Store and cluster IPAM contracts, a request etcd refuses, a killed and
 * restarted etcd, which store the CLI opens, and the CLI working with the gRPC client's
 * chunk removed from the bundle. Its timeouts are tested with the gRPC store's
 * (ipam_etcd_store_test.ts).
 */
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import { within } from "./support/wait.ts";
import { storeContract } from "../ipam/store_contract.ts";
import { clusterContract } from "../ipam/cluster_contract.ts";
import { EtcdHttpStore } from "../ipam/etcdhttp.ts";
import { EtcdStore } from "../ipam/etcd.ts";
import { StoreRequestError, StoreUnavailableError } from "../ipam/store.ts";
import { type EtcdFixture, etcdMissing, startEtcd } from "./support/etcd.ts";
import { openDatastore } from "../daemon/datastore.ts";
import { runCommand } from "../netns/netns.ts";
import { REPO } from "./support/ohno.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";
const opts = { sanitizeOps: false, sanitizeResources: false, ignore: !!missing };

let shared: EtcdFixture | undefined;
const fresh = async () => {
  shared ??= await startEtcd();
  const s = new EtcdHttpStore({ endpoints: shared.endpoints });
  await s.commit({ mutations: [{ deletePrefix: "/" }] }); // a fresh store for every case
  return s;
};
// It does not watch: the agent, which watches, uses the gRPC store.
storeContract("etcd over HTTP", fresh, { watch: false, ...(missing ? { skip: missing } : {}) });
clusterContract("etcd over HTTP", fresh, {
  ...(missing ? { skip: missing } : {}),
  teardown: async () => await shared?.[Symbol.asyncDispose](),
});

Deno.test({
  ...opts,
  name: `etcd over HTTP: refused, killed and restarted etcd; a too large request is its own ` +
    `error; a dead first endpoint is skipped${skip}`,
  async fn() {
    await using etcd = await startEtcd();
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadPort = (l.addr as Deno.NetAddr).port;
    l.close();
    const dead = `http://127.0.0.1:${deadPort}`;
    await using alone = new EtcdHttpStore({ endpoints: [dead] });
    const e = await assertRejects(() => alone.get("/k"), StoreUnavailableError);
    assertEquals(e.message, `etcd at ${dead} is unavailable (get): connection refused`);

    await using s = new EtcdHttpStore({ endpoints: [dead, ...etcd.endpoints] });
    assert((await s.commit({ mutations: [{ put: "/k", value: "1" }] })).ok);
    const big = await s.commit({ mutations: [{ put: "/big", value: "x".repeat(1600 * 1024) }] })
      .then(() => new Error("a too large commit succeeded"), (e) => e);
    assert(big instanceof StoreRequestError, String(big));
    assert(big.message.includes("refused the request (commit)"), big.message);
    assertEquals((await s.get("/k"))?.value, "1");

    await etcd.kill();
    const down = await assertRejects(() => s.get("/k"), StoreUnavailableError);
    assert(down.message.includes("unavailable (get)"), down.message);
    await etcd.restart();
    await within(
      10_000,
      "nothing lost across the restart",
      async () => (await s.get("/k").catch(() => undefined))?.value === "1",
    );
  },
});

Deno.test({
  ...opts,
  name: `the CLI opens etcd over HTTP, the agent over gRPC; a serverName other than the ` +
    `endpoint's host needs gRPC${skip}`,
  async fn() {
    const ds = (serverName?: string) => ({
      type: "etcd" as const,
      dataDir: "/nonexistent",
      etcd: { endpoints: ["https://127.0.0.1:2379"], ...(serverName ? { serverName } : {}) },
    });
    await using cli = await openDatastore(ds(), { http: true });
    assert(cli instanceof EtcdHttpStore);
    await using sameName = await openDatastore(ds("127.0.0.1"), { http: true });
    assert(sameName instanceof EtcdHttpStore);
    await using otherName = await openDatastore(ds("etcd.example"), { http: true });
    assert(otherName instanceof EtcdStore);
    await using agent = await openDatastore(ds());
    assert(agent instanceof EtcdStore);
  },
});

Deno.test({
  ...opts,
  name: `ohno ipam works with the gRPC client's chunk gone from the bundle (it loads none)${skip}`,
  async fn() {
    await using etcd = await startEtcd();
    const dir = await Deno.makeTempDir({ prefix: "ohnot-nogrpc-" });
    try {
      let removed = 0;
      for (const f of Deno.readDirSync(`${REPO}/dist/bundle`)) {
        const text = Deno.readTextFileSync(`${REPO}/dist/bundle/${f.name}`);
        if (/from\s*"(npm:)?(etcd3|@grpc\/grpc-js)[@"]/.test(text)) {
          removed++;
          continue;
        }
        Deno.writeTextFileSync(`${dir}/${f.name}`, text);
      }
      assert(removed > 0, "the bundle has a chunk that imports etcd3 or grpc-js");
      const ipam = (...args: string[]) =>
        runCommand(undefined, Deno.execPath(), {
          args: [
            "run",
            "--quiet",
            "-A",
            "--cached-only",
            "--config",
            `${REPO}/deno.json`,
            `${dir}/main.js`,
            "ipam",
            "--etcd-endpoints",
            etcd.endpoints.join(","),
            ...args,
          ],
          env: { DENO_DIR: `${REPO}/.cache/deno` },
        });
      const add = await ipam("pool", "add", "10.61.0.0/16");
      assertEquals(add.code, 0, add.stderr);
      const alloc = await ipam("allocate", "--node", "n1", "--create-node", "--handle", "vm-1");
      assertEquals(alloc.code, 0, alloc.stderr);
      const ls = await ipam("ls", "-o", "json");
      assertEquals(ls.code, 0, ls.stderr);
      assertEquals(JSON.parse(ls.stdout).map((r: { node: string }) => r.node), ["n1"]);
      const check = await ipam("check");
      assertEquals(check.code, 0, check.stdout + check.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
