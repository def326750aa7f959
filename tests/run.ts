/**
 * `deno task test`: runs every test and the root-namespace guard, then prints the plain
 * summary line CI reads: `N passed, N failed` (`, N skipped` when there are skips).
 *
 * Usage: deno task test [files or dirs…] [-- extra deno test flags]
 *
 * Counting: every leaf test case (a test without steps, or a step without sub-steps)
 * counts once; a test that failed outside its steps counts as one failure; `ignore`d
 * tests (features this kernel lacks, named `[SKIP: reason]`) count as skipped. The guard
 * counts as one test: it fails when the run left anything in (or took anything from)
 * the machine's root network namespace.
 * @module
 */

import { diffRoot, snapshotRoot } from "./support/rootguard.ts";
import { sweepStaleTestNetns, sweepTestNetnsOf, testNetnsPid } from "./support/netns.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const outDir = `${root}/tests/.out`;
const junit = `${outDir}/junit.xml`;

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

async function main(): Promise<number> {
  // Tests run dist/ohno as a runtime would: build it from the current sources first.
  const build = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}/scripts/build.ts`],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
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
      ...(targets.length ? targets : ["."]),
    ],
    cwd: root,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
    env: { DENO_JOBS: Deno.env.get("DENO_JOBS") ?? "2" },
  }).spawn();
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
  } catch {
    say(`no test report at ${junit}: deno test exited with ${status.code} before reporting`);
  }
  const counts = countCases(cases);
  if (cases.length === 0 && !status.success) counts.failed++;
  if (diff.length === 0) {
    counts.passed++;
  } else {
    counts.failed++;
    say("\nroot-namespace guard FAILED: the run changed the machine's own network namespace:");
    for (const d of diff) say(`  ${d.change} ${d.kind}: ${d.item}`);
  }
  const failedNames = cases.filter((c) => c.status === "failed").map((c) =>
    `  ${c.file}: ${c.name}`
  );
  if (failedNames.length) say(`\nfailed:\n${failedNames.join("\n")}`);
  say(`\n(tests took ${seconds}s)`);
  say(
    `${counts.passed} passed, ${counts.failed} failed` +
      (counts.skipped ? `, ${counts.skipped} skipped` : ""),
  );
  return counts.failed > 0 || (!status.success && cases.length === 0) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
