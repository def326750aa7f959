import { assert, assertEquals, assertMatch, assertNotEquals } from "../tests/support/assert.ts";
import { derivedMac, fnv1a64, hostVethName } from "./names.ts";
import { isUnicastMac } from "./config.ts";

Deno.test("host veth names are stable, 15 characters, and differ per ifname", () => {
  const a = hostVethName("0123456789abcdef", "eth0");
  assertEquals(a, hostVethName("0123456789abcdef", "eth0"));
  assertEquals(a.length, 15);
  assertMatch(a, /^veth[0-9a-f]{11}$/);
  assertNotEquals(a, hostVethName("0123456789abcdef", "net1"));
});

Deno.test("FNV-1a matches its published test vectors", () => {
  assertEquals(fnv1a64(""), 0xcbf29ce484222325n);
  assertEquals(fnv1a64("a"), 0xaf63dc4c8601ec8cn);
});

Deno.test("derived MACs are locally administered unicast", () => {
  const m = derivedMac("bridge:ohno0");
  assert(isUnicastMac(m));
  assertEquals(parseInt(m.slice(0, 2), 16) & 2, 2);
});
