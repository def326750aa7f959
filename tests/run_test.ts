/** The test runner's own counting and the root guard's diff. */
import { assertEquals } from "./support/assert.ts";
import { countCases, parseJunit } from "./run.ts";
import { diffRoot, type RootSnapshot } from "./support/rootguard.ts";
import { sweepStaleTestNetns, testNetnsPid } from "./support/netns.ts";
import { createNamedNetns, deleteNamedNetns, listNamedNetns } from "../netns/mod.ts";

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
