import { clusterContract } from "./cluster_contract.ts";
import { LocalStore } from "./local.ts";
import { MemoryStore } from "./memory.ts";

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
