/** The entry point: faces, CLI basics, and CNI VERSION through dist/ohno. */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { callCni, OHNO, OHNO_IPAM } from "./support/ohno.ts";
import { runCommand } from "../netns/netns.ts";

const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

Deno.test("ohno --help lists the parts and exits 0", async () => {
  const r = await runCommand(undefined, OHNO, { args: ["--help"] });
  assertEquals(r.code, 0, r.stderr);
  for (const word of ["version", "daemon", "ipam", "lab"]) assertMatch(r.stdout, new RegExp(word));
});

Deno.test("ohno version -o json reports ohno, deno and the CNI versions", async () => {
  const r = await runCommand(undefined, OHNO, { args: ["version", "-o", "json"] });
  assertEquals(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assertMatch(v.version, /^\d+\.\d+\.\d+/);
  assertMatch(v.deno, /^2\.9\./);
  assertEquals(v.cniVersions, VERSIONS);
});

Deno.test("an unknown subcommand fails with a message on stderr and nothing on stdout", async () => {
  const r = await runCommand(undefined, OHNO, { args: ["no-such-command"] });
  assert(r.code !== 0);
  assertEquals(r.stdout, "");
  assertMatch(r.stderr, /unknown command/);
});

for (const v of VERSIONS) {
  Deno.test(`CNI VERSION ${v} echoes the version and lists exactly the supported ones`, async () => {
    const r = await callCni({ command: "VERSION", config: { cniVersion: v } });
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.json, { cniVersion: v, supportedVersions: VERSIONS });
    assertEquals(r.stdout.trim().split("\n").length, 1);
  });
}

Deno.test("CNI VERSION answers the same under the ohno-ipam name", async () => {
  const r = await callCni({ command: "VERSION", config: { cniVersion: "1.0.0" }, bin: OHNO_IPAM });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.json?.supportedVersions, VERSIONS);
});

Deno.test("CNI VERSION with malformed JSON is error 6 as one JSON document", async () => {
  const r = await callCni({ command: "VERSION", config: "{not json" });
  assertEquals(r.code, 1);
  assertEquals(r.json?.code, 6);
  assertEquals(typeof r.json?.msg, "string");
});

/** A development dist/ohno is a launcher script; `ohno install` needs telling to install it. */
const LAUNCHER = Deno.readTextFileSync(OHNO).startsWith("#!");
const ALLOW = LAUNCHER ? ["--allow-launcher"] : [];

Deno.test("ohno install puts the plugin and its ohno-ipam link into a CNI bin dir, by rename", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-install-" });
  try {
    const first = await runCommand(undefined, OHNO, {
      args: ["install", "--cni-bin-dir", dir, "-o", "json", ...ALLOW],
    });
    assertEquals(first.code, 0, first.stderr);
    assertEquals(JSON.parse(first.stdout).changed, true);
    assertEquals(Deno.readLinkSync(`${dir}/ohno-ipam`), "ohno");
    assertEquals((Deno.statSync(`${dir}/ohno`).mode ?? 0) & 0o777, 0o755);
    // The installed copy answers as both faces.
    for (const bin of [`${dir}/ohno`, `${dir}/ohno-ipam`]) {
      const r = await callCni({ command: "VERSION", bin, config: { cniVersion: "1.0.0" } });
      assertEquals(r.code, 0, r.stderr);
      assertEquals(JSON.parse(r.stdout).cniVersion, "1.0.0");
    }
    // Again: nothing to do, and no temp files left behind.
    const again = await runCommand(undefined, OHNO, {
      args: ["install", "--cni-bin-dir", dir, ...ALLOW],
    });
    assertEquals(again.code, 0, again.stderr);
    assertMatch(again.stdout, /^unchanged: /);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["ohno", "ohno-ipam"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: `ohno install refuses a launcher script unless told${
    LAUNCHER ? "" : " [SKIP: dist/ohno is compiled]"
  }`,
  ignore: !LAUNCHER,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ohnot-install-" });
    try {
      const r = await runCommand(undefined, OHNO, { args: ["install", "--cni-bin-dir", dir] });
      assertEquals(r.code, 1);
      assertEquals(r.stdout, "");
      assertMatch(r.stderr, /is a launcher script .*--allow-launcher/);
      assertEquals([...Deno.readDirSync(dir)], [], "nothing installed");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("ohno install into a path that is not a directory fails and says where", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-install-" });
  try {
    Deno.writeTextFileSync(`${dir}/file`, "");
    const r = await runCommand(undefined, OHNO, {
      args: ["install", "--cni-bin-dir", `${dir}/file/bin`, ...ALLOW],
    });
    assert(r.code !== 0);
    assertEquals(r.stdout, "");
    assertMatch(r.stderr, new RegExp(`${dir}/file`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
