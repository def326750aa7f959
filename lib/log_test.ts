import { assertEquals, assertMatch } from "../tests/support/assert.ts";
import { formatLine, Logger, parseLevel } from "./log.ts";

Deno.test("a log line has a timestamp, the level, the context and fields", () => {
  const line = formatLine(new Date(0), "info", "ADD abc eth0", "veth up", {
    host: "veth1",
    mtu: 1500,
    why: "two words",
    skipped: undefined,
  });
  assertEquals(
    line,
    '1970-01-01T00:00:00.000Z INFO  [ADD abc eth0] veth up host=veth1 mtu=1500 why="two words"\n',
  );
});

Deno.test("a message with newlines stays on one line", () => {
  assertMatch(formatLine(new Date(0), "error", undefined, "a\nb"), /^[^\n]*\n$/);
});

Deno.test("levels below the threshold are not written; the file gets whole lines", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-log-" });
  try {
    const file = `${dir}/sub/ohno.log`;
    const log = new Logger({ level: "info", file });
    log.debug("hidden");
    log.child("GC").warn("shown", { n: 1 });
    const text = await Deno.readTextFile(file);
    assertEquals(text.split("\n").filter(Boolean).length, 1);
    assertMatch(text, /WARN {2}\[GC\] shown n=1\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unwritable log file never throws", () => {
  const log = new Logger({ file: "/proc/ohno-cannot-write/x.log" });
  log.error("still fine");
});

Deno.test("parseLevel accepts names in any case and falls back", () => {
  assertEquals(parseLevel("DEBUG"), "debug");
  assertEquals(parseLevel("loud"), "info");
  assertEquals(parseLevel(undefined, "warn"), "warn");
});
