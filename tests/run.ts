/**
 * `deno task test`: runs every test and the root-namespace guard, then prints the plain
 * summary line CI reads: `N passed, N failed` (`, N skipped` when there are skips).
 *
 * Usage: deno task test [files or dirs…] [-- extra deno test flags]
 *
 * Counting: every leaf test case (a test without steps, or a step without sub-steps)
 * counts once; a test that failed outside its steps counts as one failure; `ignore`d
 * tests (features this kernel lacks, named `[SKIP: reason]`) count as skipped.
 *
 * The line cannot say more than Deno does: whenever `deno test` itself exits non-zero (a
 * file that fails to load, a leftover `only`, an uncaught error between tests, a crash)
 * the run fails, with a failure counted and Deno's own reason printed, whatever the
 * report holds. The root-namespace guard is not a test: it adds a failure when the run
 * left anything in (or took anything from) the machine's root network namespace, and
 * nothing otherwise.
 * @module
 */

import { diffRoot, snapshotRoot } from "./support/rootguard.ts";
import { sweepStaleTestNetns, sweepTestNetnsOf, testNetnsPid } from "./support/netns.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const outDir = `${root}/tests/.out`;
// One report per runner process: a runner started by a test (run_test.ts) must not
// overwrite the report of the run around it.
const junit = `${outDir}/junit-${Deno.pid}.xml`;

function say(s: string) {
  // deno-lint-ignore no-console
  console.log(s);
}

interface Case {
  name: string;
  file: string;
  status: "passed" | "failed" | "skipped";
}

/** Parses deno's JUnit report (the subset deno writes). Exported for tests. */
export function parseJunit(xml: string): Case[] {
  const cases: Case[] = [];
  const re = /<testcase name="([^"]*)" classname="([^"]*)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const body = m[4] ?? "";
    const status = /<failure|<error/.test(body)
      ? "failed"
      : /<skipped/.test(body)
      ? "skipped"
      : "passed";
    cases.push({ name: unescapeXml(m[1] ?? ""), file: unescapeXml(m[2] ?? ""), status });
  }
  return cases;
}

function unescapeXml(s: string): string {
  return s.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&quot;", '"')
    .replaceAll("&apos;", "'").replaceAll("&amp;", "&");
}

/** Counts leaves; a parent that failed while all its leaves passed counts as one failure. */
export function countCases(cases: Case[]): { passed: number; failed: number; skipped: number } {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  const key = (c: Case) => `${c.file}\u0000${c.name}`;
  const hasChildren = new Set<string>();
  for (const c of cases) {
    const parts = c.name.split(" > ");
    for (let i = 1; i < parts.length; i++) {
      hasChildren.add(`${c.file}\u0000${parts.slice(0, i).join(" > ")}`);
    }
  }
  for (const c of cases) {
    if (!hasChildren.has(key(c))) {
      counts[c.status]++;
      continue;
    }
    if (c.status !== "failed") continue;
    const prefix = c.name + " > ";
    const childFailed = cases.some((d) =>
      d.file === c.file && d.name.startsWith(prefix) && d.status === "failed"
    );
    if (!childFailed) counts.failed++;
  }
  return counts;
}

export interface Verdict {
  passed: number;
  failed: number;
  skipped: number;
  /** Why the run failed beyond the named failed cases. */
  reasons: string[];
  exitCode: number;
}

/**
 * The run's verdict from the report, Deno's own exit code, the lines Deno printed that say
 * why it failed, and the root guard's findings. Pure, for tests.
 */
export function verdict(opts: {
  cases: Case[];
  denoExitCode: number;
  denoErrors: string[];
  guard: string[];
}): Verdict {
  const counts = countCases(opts.cases);
  const reasons: string[] = [];
  if (opts.denoExitCode !== 0 && counts.failed === 0) {
    // Deno failed the run but the report names no failed case: a file that did not load,
    // an `only`, an error outside any test. One failure, with Deno's reason.
    counts.failed++;
    const why = opts.denoErrors.length ? opts.denoErrors : ["(deno printed no reason)"];
    reasons.push(
      `deno test exited with code ${opts.denoExitCode} although the report has no failed test:`,
      ...why.map((l) => `  ${l}`),
    );
  }
  if (opts.guard.length) {
    counts.failed++;
    reasons.push(
      "root-namespace guard: the run changed the machine's own network namespace:",
      ...opts.guard.map((l) => `  ${l}`),
    );
  }
  const exitCode = counts.failed > 0 || opts.denoExitCode !== 0 ? 1 : 0;
  return { ...counts, reasons, exitCode };
}

/**
 * The lines of Deno's output that say why a run failed outside a named test: `error: …`
 * lines (a file that did not load, the `only` option) and the files named with
 * `(uncaught error)`.
 */
export function denoErrorLines(output: string): string[] {
  // Deno colours its output even into a pipe.
  // deno-lint-ignore no-control-regex
  const lines = output.split("\n").map((l) => l.replace(/\x1b\[[0-9;]*m/g, "").trim());
  const out: string[] = [];
  for (const l of lines) {
    if ((/^error: /.test(l) || / \(uncaught error\)$/.test(l)) && !out.includes(l)) out.push(l);
  }
  return out.slice(0, 20);
}

/** Copies a child's stream to ours as it comes, keeping the last `keep` bytes of it. */
async function tee(
  stream: ReadableStream<Uint8Array>,
  to: { writeSync(p: Uint8Array): number },
  keep = 256 * 1024,
): Promise<string> {
  let tail = new Uint8Array(0);
  for await (const chunk of stream) {
    let off = 0;
    while (off < chunk.length) off += to.writeSync(chunk.subarray(off));
    const joined = new Uint8Array(Math.min(keep, tail.length + chunk.length));
    const all = concat(tail, chunk);
    joined.set(all.subarray(all.length - joined.length));
    tail = joined;
  }
  return new TextDecoder().decode(tail);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function main(): Promise<number> {
  // Tests run dist/ohno as a runtime would: build it from the current sources first
  // (OHNO_TEST_NO_BUILD=1: the caller just built it, as run_test.ts's nested runs do).
  const build = Deno.env.get("OHNO_TEST_NO_BUILD") ? { success: true } : await new Deno.Command(
    Deno.execPath(),
    { args: ["run", "-A", `${root}/scripts/build.ts`], stdout: "inherit", stderr: "inherit" },
  ).output();
  if (!build.success) {
    say("building dist/ohno failed");
    say("0 passed, 1 failed");
    return 1;
  }
  const sep = Deno.args.indexOf("--");
  const targets = sep >= 0 ? Deno.args.slice(0, sep) : Deno.args;
  const extra = sep >= 0 ? Deno.args.slice(sep + 1) : [];
  Deno.mkdirSync(outDir, { recursive: true });
  try {
    Deno.removeSync(junit);
  } catch {
    // none yet
  }

  // Namespaces left by a run that was killed before it could clean up.
  const stale = await sweepStaleTestNetns();
  if (stale.length) say(`removed ${stale.length} test namespaces left by dead runs`);
  const before = await snapshotRoot();
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "-A",
      "--no-prompt",
      "--frozen",
      `--junit-path=${junit}`,
      ...(Deno.env.get("OHNO_TEST_SERIAL") ? [] : ["--parallel"]),
      ...extra,
      // The e2e file is not named *_test.ts (`./dev e2e` runs it alone); the whole suite has it.
      ...(targets.length ? targets : [".", "tests/e2e/kube_e2e.ts"]),
    ],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_JOBS: Deno.env.get("DENO_JOBS") ?? "2" },
  }).spawn();
  // Deno's output goes through as it comes; its tail is kept for the reasons of a failure.
  const [out, err] = await Promise.all([
    tee(child.stdout, Deno.stdout),
    tee(child.stderr, Deno.stderr),
  ]);
  const status = await child.status;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);

  // The guard: compare, report, then sweep this run's namespaces so the next run starts
  // clean. Test namespaces of *other* live processes (a benchmark or a second run on the
  // same machine) are theirs to clean and not this run's change.
  const ignore = Deno.env.get("OHNO_GUARD_IGNORE_NETNS");
  const ignoreRe = ignore ? new RegExp(ignore) : undefined;
  const ignored = (name: string) => {
    const pid = testNetnsPid(name);
    if (pid !== undefined && pid !== child.pid) return true;
    return ignoreRe?.test(name) ?? false;
  };
  const diff = diffRoot(before, await snapshotRoot(), ignored);
  await sweepTestNetnsOf(child.pid);

  let cases: Case[] = [];
  try {
    cases = parseJunit(Deno.readTextFileSync(junit));
    Deno.removeSync(junit);
  } catch {
    say(`no test report at ${junit}: deno test exited with ${status.code} before reporting`);
  }
  const v = verdict({
    cases,
    denoExitCode: status.code,
    denoErrors: denoErrorLines(`${out}\n${err}`),
    guard: diff.map((d) => `${d.change} ${d.kind}: ${d.item}`),
  });
  const failedNames = cases.filter((c) => c.status === "failed").map((c) =>
    `  ${c.file}: ${c.name}`
  );
  if (failedNames.length) say(`\nfailed:\n${failedNames.join("\n")}`);
  if (v.reasons.length) say(`\n${v.reasons.join("\n")}`);
  say(`\n(tests took ${seconds}s)`);
  say(
    `${v.passed} passed, ${v.failed} failed` + (v.skipped ? `, ${v.skipped} skipped` : ""),
  );
  return v.exitCode;
}

if (import.meta.main) Deno.exit(await main());
