/**
 * `./dev mutants`: is the suite able to notice a broken promise? Each mutant is a one-line
 * break of a behaviour ohno promises (DEL releases, a failed ADD rolls back, allocation
 * compares before it creates, …). For each, in a scratch copy of the working tree, the
 * script applies the break, builds dist/ohno, runs the tests that guard that behaviour
 * and records whether they failed. A break that leaves its tests green is a hole in the
 * suite; the script then exits 1.
 *
 * Usage: ./dev mutants [ID…]        (no ID: every mutant)
 *        ./dev mutants --list
 *
 * A mutant names the exact text it replaces; when the code moves on and that text is no
 * longer there exactly once, the mutant is reported as stale (and the run fails), so the
 * list cannot rot into breaks that are never applied. Before any break, the guarding
 * tests are run unbroken: a mutant only counts as caught if its tests passed without it.
 * @module
 */

import { type Mutant, MUTANTS } from "./mutants_list.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

function say(s: string) {
  // deno-lint-ignore no-console
  console.log(s);
}

async function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: Record<string, string> },
): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env ?? {},
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

/** A copy of the working tree (tracked and new files), sharing the toolchain and caches. */
async function scratchCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ohno-mutants-" });
  const files = await run("git", ["ls-files", "-co", "--exclude-standard", "-z"], { cwd: root });
  if (files.code !== 0) throw new Error(`git ls-files failed: ${files.out}`);
  for (const f of files.out.split("\0").filter(Boolean)) {
    const to = `${dir}/${f}`;
    // A worktree's links to the shared toolchain and cache are made below, not copied.
    const st = await Deno.lstat(`${root}/${f}`).catch(() => undefined);
    if (st?.isSymlink) continue;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    try {
      await Deno.copyFile(`${root}/${f}`, to);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // deleted but not yet staged
    }
  }
  for (const link of ["tools/deno/node_modules", ".cache"]) {
    await Deno.symlink(`${root}/${link}`, `${dir}/${link}`).catch(() => {});
  }
  // Executable bits (dev, launcher templates).
  await run("chmod", ["+x", `${dir}/dev`], { cwd: dir });
  return dir;
}

interface Outcome {
  mutant: Mutant;
  status: "caught" | "SURVIVED" | "stale" | "tests fail unbroken";
  failed: string[];
  seconds: number;
}

/** Runs tests/run.ts in `dir` on the mutant's tests; the names of the failed tests. */
async function runTests(dir: string, m: Mutant): Promise<{ code: number; failed: string[] }> {
  const build = await run(Deno.execPath(), ["run", "-A", "scripts/build.ts"], { cwd: dir });
  if (build.code !== 0) return { code: build.code, failed: ["(build failed)"] };
  const args = ["run", "-A", "tests/run.ts", ...m.tests];
  if (m.filter) args.push("--", `--filter=${m.filter}`);
  const env: Record<string, string> = {
    ...Deno.env.toObject(),
    OHNO_TEST_NO_BUILD: "1",
    NO_COLOR: "1",
  };
  const r = await run(Deno.execPath(), args, { cwd: dir, env });
  const failed: string[] = [];
  const at = r.out.lastIndexOf("\nfailed:\n");
  if (at >= 0) {
    for (const l of r.out.slice(at + 9).split("\n")) {
      if (!l.startsWith("  ")) break;
      failed.push(l.trim());
    }
  }
  if (r.code !== 0 && failed.length === 0) {
    failed.push(r.out.trimEnd().split("\n").slice(-3).join(" | "));
  }
  return { code: r.code, failed };
}

function apply(dir: string, m: Mutant): boolean {
  const path = `${dir}/${m.file}`;
  const text = Deno.readTextFileSync(path);
  const first = text.indexOf(m.from);
  if (first < 0 || text.indexOf(m.from, first + 1) >= 0) return false;
  Deno.writeTextFileSync(path, text.replace(m.from, m.to));
  return true;
}

async function main(): Promise<number> {
  if (Deno.args.includes("--list")) {
    for (const m of MUTANTS) say(`${m.id.padEnd(22)} ${m.what}`);
    return 0;
  }
  const wanted = Deno.args.filter((a) => !a.startsWith("-"));
  const unknown = wanted.filter((w) => !MUTANTS.some((m) => m.id === w));
  if (unknown.length) {
    say(`unknown mutant(s): ${unknown.join(", ")} (see --list)`);
    return 2;
  }
  const mutants = wanted.length ? MUTANTS.filter((m) => wanted.includes(m.id)) : MUTANTS;
  const dir = await scratchCopy();
  const outcomes: Outcome[] = [];
  // Unbroken runs, by test set: several mutants share their guards.
  const unbrokenRuns = new Map<string, Promise<{ code: number; failed: string[] }>>();
  try {
    for (const m of mutants) {
      const t0 = performance.now();
      const original = Deno.readTextFileSync(`${dir}/${m.file}`);
      let status: Outcome["status"];
      let failed: string[] = [];
      const key = JSON.stringify([m.tests, m.filter]);
      if (!unbrokenRuns.has(key)) unbrokenRuns.set(key, runTests(dir, m));
      const unbroken = await unbrokenRuns.get(key)!;
      if (unbroken.code !== 0) {
        status = "tests fail unbroken";
        failed = unbroken.failed;
      } else if (!apply(dir, m)) {
        status = "stale";
      } else {
        try {
          const broken = await runTests(dir, m);
          failed = broken.failed;
          status = broken.code !== 0 ? "caught" : "SURVIVED";
        } finally {
          Deno.writeTextFileSync(`${dir}/${m.file}`, original);
        }
      }
      const o = { mutant: m, status, failed, seconds: (performance.now() - t0) / 1000 };
      outcomes.push(o);
      say(
        `${o.status.padEnd(8)} ${m.id} (${o.seconds.toFixed(0)} s)${
          failed.length ? `: ${failed.length} failed, e.g. ${failed[0]}` : ""
        }`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  say("\n| mutant | the break | file | guarded by | result |");
  say("| --- | --- | --- | --- | --- |");
  for (const o of outcomes) {
    say(
      `| ${o.mutant.id} | ${o.mutant.what} | ${o.mutant.file} | ${o.mutant.tests.join(" ")}${
        o.mutant.filter ? ` (filter ${o.mutant.filter})` : ""
      } | ${o.status}${o.status === "caught" ? ` (${o.failed.length} failed)` : ""} |`,
    );
  }
  const bad = outcomes.filter((o) => o.status !== "caught");
  say(
    `\n${outcomes.length - bad.length} of ${outcomes.length} breaks caught` +
      (bad.length
        ? `; not caught: ${bad.map((o) => `${o.mutant.id} (${o.status})`).join(", ")}`
        : ""),
  );
  return bad.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
