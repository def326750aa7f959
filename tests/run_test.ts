/** The test runner's own counting and the root guard's diff. */
import { assertEquals, assertStringIncludes } from "./support/assert.ts";
import { countCases, denoErrorLines, parseJunit, verdict } from "./run.ts";
import { diffRoot, type RootSnapshot } from "./support/rootguard.ts";
import { sweepStaleTestNetns, testLabOf, testNetnsPid } from "./support/netns.ts";
import { createNamedNetns, deleteNamedNetns, listNamedNetns } from "../netns/manage.ts";

const XML = `<testsuites>
<testsuite name="./a_test.ts">
<testcase name="plain" classname="./a_test.ts" time="0.1"></testcase>
<testcase name="skipped [SKIP: no ipip]" classname="./a_test.ts" time="0"><skipped/></testcase>
<testcase name="broken" classname="./a_test.ts" time="0"><failure message="x">x</failure></testcase>
<testcase name="parent" classname="./a_test.ts" time="0"><failure message="y">y</failure></testcase>
<testcase name="parent &gt; one" classname="./a_test.ts" time="0"></testcase>
<testcase name="parent &gt; two" classname="./a_test.ts" time="0"><failure message="z">z</failure></testcase>
<testcase name="p2" classname="./a_test.ts" time="0"><failure message="w">w</failure></testcase>
<testcase name="p2 &gt; ok" classname="./a_test.ts" time="0"></testcase>
</testsuite></testsuites>`;

Deno.test("leaves count once; a parent counts only when it failed outside its steps", () => {
  const cases = parseJunit(XML);
  assertEquals(cases.length, 8);
  assertEquals(cases[4]?.name, "parent > one");
  // plain, parent>one, p2>ok pass; broken, parent>two, and p2 (failed outside steps) fail
  assertEquals(countCases(cases), { passed: 3, failed: 3, skipped: 1 });
});

const empty: RootSnapshot = {
  links: ["lo"],
  addresses: [],
  routes: [],
  rules: [],
  nftTables: [],
  sysctls: ["net/ipv4/ip_forward=0"],
  namedNetns: [],
};

Deno.test("the root guard reports additions, removals and changed sysctls", () => {
  const after: RootSnapshot = {
    ...empty,
    links: ["lo", "ohno0 (bridge)"],
    sysctls: ["net/ipv4/ip_forward=1"],
    namedNetns: ["ohnot-1-a0", "other-run-x"],
  };
  const d = diffRoot(empty, after, /^other-run-/);
  assertEquals(d, [
    { kind: "links", change: "added", item: "ohno0 (bridge)" },
    { kind: "sysctls", change: "added", item: "net/ipv4/ip_forward=1" },
    { kind: "sysctls", change: "removed", item: "net/ipv4/ip_forward=0" },
    { kind: "namedNetns", change: "added", item: "ohnot-1-a0" },
  ]);
  assertEquals(diffRoot(empty, empty), []);
});

Deno.test("the runner removes test namespaces of dead runs and leaves live ones alone", async () => {
  // A pid that certainly is gone: a child we waited for.
  const child = new Deno.Command("true").spawn();
  await child.status;
  const dead = `ohnot-${child.pid}-sweep0`;
  const live = `ohnot-1-sweep${child.pid}`; // pid 1 is always alive
  assertEquals(testNetnsPid(dead), child.pid);
  assertEquals(testNetnsPid("cni-1234"), undefined);
  (await createNamedNetns(dead)).close();
  (await createNamedNetns(live)).close();
  try {
    const removed = await sweepStaleTestNetns();
    assertEquals(removed.includes(dead), true);
    assertEquals(listNamedNetns().includes(dead), false);
    assertEquals(listNamedNetns().includes(live), true);
  } finally {
    await deleteNamedNetns(dead).catch(() => {});
    await deleteNamedNetns(live).catch(() => {});
  }
});

Deno.test("the verdict fails whenever Deno failed, whatever the report holds", () => {
  const cases = parseJunit(XML).filter((c) => c.status !== "failed");
  const ok = verdict({ cases, denoExitCode: 0, denoErrors: [], guard: [] });
  assertEquals([ok.passed, ok.failed, ok.skipped, ok.exitCode], [3, 0, 1, 0]);
  const loadFailed = verdict({
    cases,
    denoExitCode: 1,
    denoErrors: ["error: Test failed"],
    guard: [],
  });
  assertEquals([loadFailed.passed, loadFailed.failed, loadFailed.exitCode], [3, 1, 1]);
  assertEquals(loadFailed.reasons[1], "  error: Test failed");
  // Failures the report names are not counted twice; the run still fails.
  const named = verdict({ cases: parseJunit(XML), denoExitCode: 1, denoErrors: [], guard: [] });
  assertEquals([named.failed, named.exitCode], [3, 1]);
  // The guard adds a failure only when it finds something; it is never a pass.
  const guarded = verdict({ cases, denoExitCode: 0, denoErrors: [], guard: ["added links: x"] });
  assertEquals([guarded.passed, guarded.failed, guarded.exitCode], [3, 1, 1]);
});

Deno.test("Deno's reasons are picked from its output", () => {
  const out = [
    '\x1b[1m\x1b[31merror\x1b[0m: Test failed because the "only" option was used',
    "./tests/x_test.ts (uncaught error)",
    "ok | 1 passed | 0 failed",
    "./tests/x_test.ts (uncaught error)",
  ].join("\n");
  assertEquals(denoErrorLines(out), [
    'error: Test failed because the "only" option was used',
    "./tests/x_test.ts (uncaught error)",
  ]);
});

const lastLine = (out: string) => out.trimEnd().split("\n").at(-1) ?? "";

/** Runs the runner on one fixture file, as `./dev test FILE` would (dist/ohno is built). */
async function runRunner(fixture: string): Promise<{ code: number; out: string; last: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./run.ts", import.meta.url).pathname, fixture],
    cwd: new URL("..", import.meta.url).pathname,
    env: { OHNO_TEST_NO_BUILD: "1", NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(r.stdout);
  return { code: r.code, out: stdout + dec.decode(r.stderr), last: lastLine(stdout) };
}

Deno.test("a test file that fails to load fails the run and says why", async () => {
  const r = await runRunner("tests/fixtures/runner/load_fails.ts");
  assertEquals(r.code, 1);
  assertEquals(r.last, "0 passed, 1 failed");
  assertStringIncludes(r.out, "this file fails to load on purpose");
  assertStringIncludes(r.out, "deno test exited with code 1 although the report has no failed");
});

Deno.test("a leftover `only` fails the run and says why", async () => {
  const r = await runRunner("tests/fixtures/runner/only_left.ts");
  assertEquals(r.code, 1);
  assertEquals(r.last, "1 passed, 1 failed, 1 skipped");
  assertStringIncludes(r.out, 'error: Test failed because the "only" option was used');
});

Deno.test("a file whose tests all pass passes, and only its leaves count", async () => {
  const r = await runRunner("tests/fixtures/runner/all_pass.ts");
  assertEquals(r.code, 0);
  assertEquals(r.last, "3 passed, 0 failed");
});

Deno.test("test labs carry their run's pid, so a run ignores and sweeps only its own", () => {
  assertEquals(testNetnsPid("ohno-lab-t4194303z0a1bx12-node1"), 4194303);
  assertEquals(testNetnsPid("ohno-lab-t77z0a1bx0"), 77);
  assertEquals(testLabOf("ohno-lab-t77z0a1bx0-outside"), "t77z0a1bx0");
  // `ohno lab up` labs of people, and bench labs, are not test labs.
  assertEquals(testNetnsPid("ohno-lab-demo-node1"), undefined);
  assertEquals(testLabOf("ohno-lab-bsc12x0-node1"), undefined);
});
