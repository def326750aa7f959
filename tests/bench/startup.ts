/**
 * Start-up cost: dist/ohno answering CNI VERSION next to the reference bridge plugin
 * answering VERSION, interleaved in one run, and the pinned Deno running an empty program:
 * the floor of every CNI call, and what sets it.
 */
import { runCommand } from "../../netns/netns.ts";
import { OHNO, REF_CNI_DIR } from "../support/ohno.ts";
import { ms, printTable, ratio, summarize, timeIt } from "./stats.ts";

export async function benchStartup(runs = 50): Promise<void> {
  const stdinText = JSON.stringify({ cniVersion: "1.0.0" });
  const env = { CNI_COMMAND: "VERSION", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
  const call = async (bin: string) => {
    const r = await runCommand(undefined, bin, { env, clearEnv: true, stdinText });
    if (!r.success) throw new Error(`${bin} VERSION failed: ${r.stdout}${r.stderr}`);
  };
  const bridge = `${REF_CNI_DIR}/bridge`;
  // Warm both (page cache, Deno's code cache), then interleave so noise hits both alike.
  for (let i = 0; i < 3; i++) {
    await call(OHNO);
    await call(bridge);
  }
  // The floor of any Deno program: the pinned Deno running an empty module, with no
  // config to find and nothing to load.
  const dir = await Deno.makeTempDir({ prefix: "ohnot-empty-" });
  await Deno.writeTextFile(`${dir}/empty.js`, "");
  const empty = async () => {
    const r = await runCommand(undefined, Deno.execPath(), {
      args: ["run", "--quiet", "--allow-all", "--no-prompt", "--no-config", `${dir}/empty.js`],
      env: { DENO_NO_UPDATE_CHECK: "1" },
    });
    if (!r.success) throw new Error(`deno run of an empty module failed: ${r.stderr}`);
  };
  await empty();
  const ohno: number[] = [];
  const ref: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < runs; i++) {
    ohno.push(await timeIt(() => call(OHNO)));
    ref.push(await timeIt(() => call(bridge)));
    floor.push(await timeIt(empty));
  }
  await Deno.remove(dir, { recursive: true });
  const a = summarize(ohno);
  const b = summarize(ref);
  const f = summarize(floor);
  printTable(`start-up: CNI VERSION, ${runs} runs each, interleaved (ms)`, [
    "plugin",
    "p50",
    "p90",
    "p99",
  ], [
    ["ohno (dist/ohno)", ms(a.p50), ms(a.p90), ms(a.p99)],
    ["reference bridge", ms(b.p50), ms(b.p90), ms(b.p99)],
    ["ratio ohno/bridge", ratio(a.p50, b.p50), ratio(a.p90, b.p90), ratio(a.p99, b.p99)],
    ["floor: deno, empty module", ms(f.p50), ms(f.p90), ms(f.p99)],
    ["ratio floor/bridge", ratio(f.p50, b.p50), ratio(f.p90, b.p90), ratio(f.p99, b.p99)],
  ]);
}
