import { assert, assertEquals } from "../tests/support/assert.ts";
import {
  ipErrorFor,
  IpExistsError,
  IpInvalidError,
  IpNotFoundError,
  IpUnsupportedError,
} from "./errors.ts";

Deno.test("ip's stderr maps to the right error class", () => {
  const cases: [string, unknown][] = [
    ["RTNETLINK answers: File exists", IpExistsError],
    ['Cannot find device "eth9"', IpNotFoundError],
    ["RTNETLINK answers: No such process", IpNotFoundError],
    ['Error: argument "x" is wrong: Invalid prefix', IpInvalidError],
    ["Error: Unknown device type.", IpUnsupportedError],
    ["RTNETLINK answers: Operation not supported", IpUnsupportedError],
  ];
  for (const [stderr, cls] of cases) {
    const e = ipErrorFor("link add x", stderr, 2);
    assert(e instanceof (cls as typeof IpExistsError), `${stderr} → ${e.name}`);
  }
});

Deno.test("an ip error names the command, the namespace and ip's words", () => {
  const e = ipErrorFor("link del x", 'Cannot find device "x"\n', 1, "/var/run/netns/p");
  assertEquals(e.message, 'ip link del x failed in /var/run/netns/p: Cannot find device "x"');
  assertEquals(e.exitCode, 1);
});
