import { Command } from "commander";
import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { DAEMON_FLAGS, DaemonConfigError, loadDaemonConfig, validate } from "./config.ts";
import { flagProp, SETTINGS, type SettingSpec } from "./settings.ts";
import { DOC_FILE, docRows, settingsRows } from "./settings_doc.ts";

const SPECS: readonly SettingSpec[] = SETTINGS;

Deno.test("settings: docs/daemon.md's table is the declaration (key, flag, env, default, doc)", async () => {
  const doc = await Deno.readTextFile(DOC_FILE);
  const want = settingsRows();
  const got = docRows(doc);
  const keyed = (rows: string[][]) => new Map(rows.map((r) => [`${r[0]} ${r[1]}`, r]));
  const [w, g] = [keyed(want), keyed(got)];
  const undocumented = [...w.keys()].filter((k) => !g.has(k));
  const undeclared = [...g.keys()].filter((k) => !w.has(k));
  assertEquals(
    { undocumented, undeclared },
    { undocumented: [], undeclared: [] },
    "run ./dev deno run -A daemon/settings_doc.ts && ./dev deno fmt docs/daemon.md",
  );
  assertEquals(got, want, "run ./dev deno run -A daemon/settings_doc.ts to regenerate");
});

Deno.test("settings: keys, flags and variables are each declared once", () => {
  for (
    const names of [
      SPECS.map((s) => s.key),
      SPECS.map((s) => s.at ?? s.key),
      DAEMON_FLAGS.map((f) => f.name),
      DAEMON_FLAGS.flatMap((f) => (f.env ? [f.env] : [])),
    ]
  ) {
    assertEquals(names.filter((n, i) => names.indexOf(n) !== i), []);
  }
  // A key is a value or an object of keys, never both.
  for (const s of SPECS) {
    assertEquals(SPECS.filter((t) => t.key.startsWith(`${s.key}.`)).map((t) => t.key), []);
  }
  assertEquals(flagProp("--node-ip <addr[,addr]>"), "nodeIp");
  assertEquals(flagProp("--vxlan-direct-routing <on|off>"), "vxlanDirectRouting");
});

Deno.test("settings: with nothing given, every setting that is not optional has a value", () => {
  const c = loadDaemonConfig({
    defaultFile: "/nonexistent/ohno-test/ohno.json",
    hostname: () => "h",
    env: () => undefined,
  });
  for (const s of SPECS) {
    const path = (s.at ?? s.key).split(".");
    if (s.optional || path.some((p) => p.endsWith("?"))) continue;
    const value = path.reduce<unknown>((o, p) => (o as Record<string, unknown>)?.[p], c);
    assert(value !== undefined, `${s.key}: no default and nothing derives it`);
  }
});

Deno.test("settings: commander fills exactly the DaemonFlags property each flag declares", () => {
  const cmd = new Command("daemon").exitOverride();
  for (const f of DAEMON_FLAGS) cmd.option(f.flags, f.description);
  cmd.parse(DAEMON_FLAGS.flatMap((f) => [f.flags.split(" ")[0]!, `v-${f.name}`]), {
    from: "user",
  });
  assertEquals(
    cmd.opts(),
    Object.fromEntries(DAEMON_FLAGS.map((f) => [f.name, `v-${f.name}`])),
  );
});

Deno.test("settings: validate() is pure and names the rule's source", () => {
  const base = loadDaemonConfig({
    defaultFile: "/nonexistent/ohno-test/ohno.json",
    hostname: () => "h",
    env: () => undefined,
  });
  const pools = [{ cidr: "10.244.0.0/16", blockPrefix: 24 }, {
    cidr: "10.244.8.0/24",
    blockPrefix: 26,
  }];
  const c = { ...base, pools, clusterCIDRs: ["10.0.0.0/8"] };
  const e = assertThrows(
    () => validate(c, (key) => (key === "pools" ? "--pool" : "config")),
    DaemonConfigError,
    '--pool: pools "10.244.0.0/16 10.244.8.0/24" overlap',
  );
  assertEquals([e.key, e.source], ["pools", "--pool"]);
  assertEquals(c.pools, pools);
  validate({ ...c, pools: pools.slice(0, 1) }, () => "config");
});
