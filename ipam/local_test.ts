import { assert, assertEquals, assertRejects } from "../tests/support/assert.ts";
import { storeContract } from "./store_contract.ts";
import { LocalStore } from "./local.ts";
import { atomically, StoreUnavailableError } from "./store.ts";

const dirs: string[] = [];
storeContract("local", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-store-" });
  dirs.push(dir);
  return new LocalStore(dir);
}, { watch: false });

Deno.test("local store: 4 processes × 25 increments under one flock lose nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-store-" });
  try {
    const mod = new URL("./local.ts", import.meta.url).href;
    const storeMod = new URL("./store.ts", import.meta.url).href;
    const script = `
      import { LocalStore } from "${mod}";
      import { atomically } from "${storeMod}";
      const s = new LocalStore(${JSON.stringify(dir)});
      for (let i = 0; i < 25; i++) {
        await atomically(s, async (r) => {
          const kv = await r.get("/n");
          const n = kv ? Number(kv.value) : 0;
          return { txn: { compare: [kv ? { key: "/n", modRevision: kv.modRevision } : { key: "/n", absent: true }],
                          mutations: [{ put: "/n", value: String(n + 1) }] }, result: n };
        });
      }`;
    const procs = Array.from({ length: 4 }, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", "--no-prompt", "--cached-only", script],
        stdout: "piped",
        stderr: "piped",
      }).output());
    for (const p of await Promise.all(procs)) {
      assert(p.success, new TextDecoder().decode(p.stderr));
    }
    const s = new LocalStore(dir);
    assertEquals((await s.get("/n"))?.value, "100");
    assertEquals(await s.revision(), 100);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("local store: a corrupt state file is reported, not overwritten", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-store-" });
  try {
    await Deno.writeTextFile(`${dir}/store.json`, "{not json");
    const s = new LocalStore(dir);
    await assertRejects(() => s.list("/"), StoreUnavailableError, "corrupt");
    await assertRejects(
      () => s.commit({ mutations: [{ put: "/a", value: "1" }] }),
      StoreUnavailableError,
    );
    assertEquals(await Deno.readTextFile(`${dir}/store.json`), "{not json");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("local store: an exclusive section that throws writes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-store-" });
  try {
    const s = new LocalStore(dir);
    await assertRejects(() =>
      atomically(s, () => {
        throw new RangeError("decided against it");
      }), RangeError);
    await assertRejects(() =>
      s.exclusive(async (r) => {
        await s.commit({ mutations: [{ put: "/x", value: "1" }] });
        assertEquals((await r.get("/x"))?.value, "1");
        throw new Error("abort");
      })
    );
    assertEquals(await s.get("/x"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("local store: a directory that cannot be created is StoreUnavailableError", async () => {
  const s = new LocalStore("/proc/ohno-no/ipam");
  await assertRejects(
    () => s.commit({ mutations: [{ put: "/a", value: "1" }] }),
    StoreUnavailableError,
    "/proc/ohno-no/ipam",
  );
});

globalThis.addEventListener("unload", () => {
  for (const d of dirs) {
    try {
      Deno.removeSync(d, { recursive: true });
    } catch {
      // already gone
    }
  }
});
