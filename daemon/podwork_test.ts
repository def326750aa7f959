import { assertEquals } from "../tests/support/assert.ts";
import { canEnterNamespaces } from "./podwork.ts";

Deno.test("canEnterNamespaces reads CAP_SYS_ADMIN (bit 21) of CapEff", () => {
  const status = (capEff: string) => `Name:\tohno\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\n`;
  // root: all capabilities.
  assertEquals(canEnterNamespaces(status("000001ffffffffff")), true);
  // The manifest's agent: NET_BIND_SERVICE (10), NET_ADMIN (12), NET_RAW (13).
  assertEquals(canEnterNamespaces(status("0000000000003400")), false);
  // SYS_ADMIN alone.
  assertEquals(canEnterNamespaces(status("0000000000200000")), true);
  assertEquals(canEnterNamespaces("no capabilities line"), false);
});
