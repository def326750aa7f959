import { assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { parseIpAddrsAnnotation } from "./pods.ts";

Deno.test("ohno.io/ip-addrs: a JSON list or a comma-separated list, canonical addresses", () => {
  assertEquals(parseIpAddrsAnnotation('["10.244.1.50", "fd00:10:244:1:0::50"]'), [
    "10.244.1.50",
    "fd00:10:244:1::50",
  ]);
  assertEquals(parseIpAddrsAnnotation(" 10.244.1.50 , 10.244.1.51/24"), [
    "10.244.1.50",
    "10.244.1.51",
  ]);
});

Deno.test("ohno.io/ip-addrs: what does not parse is an error naming it", () => {
  assertThrows(() => parseIpAddrsAnnotation("[10.244.1.50"), Error, "not a JSON list");
  assertThrows(() => parseIpAddrsAnnotation("[]"), Error, "names no address");
  assertThrows(() => parseIpAddrsAnnotation(""), Error, "names no address");
  assertThrows(() => parseIpAddrsAnnotation("[5]"), Error, "5 is not an address");
  assertThrows(() => parseIpAddrsAnnotation("banana"), Error, '"banana" is not an IP address');
});
