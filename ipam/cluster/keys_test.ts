import { assertEquals } from "../../tests/support/assert.ts";
import { parseCidr } from "../addr.ts";
import { addressOfIpKey, blockTextOfIpKey, K, lastSegment } from "./keys.ts";

Deno.test("keys: an address key gives back its address, block and prefix", () => {
  const table: [string, string, string][] = [
    ["10.244.3.0/24", "10.244.3.7", "10.244.3.7/24"],
    ["fd00:244:0:7::/64", "fd00:244:0:7::2", "fd00:244:0:7::2/64"],
    ["10.9.0.8/29", "10.9.0.10", "10.9.0.10/29"],
  ];
  for (const [block, ip, address] of table) {
    const key = K.ip(parseCidr(block), ip);
    assertEquals(addressOfIpKey(key), address, key);
    assertEquals(blockTextOfIpKey(key), block, key);
    assertEquals(lastSegment(key), ip, key);
  }
  assertEquals(
    K.ip(parseCidr("10.244.3.0/24"), "10.244.3.7"),
    "/ohno/v1/ips/10.244.3.0-24/10.244.3.7",
  );
  assertEquals(lastSegment(K.reservation("10.244.3.9")), "10.244.3.9");
});
