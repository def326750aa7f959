import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import ipaddr from "ipaddr.js";
import {
  cidrKey,
  cidrSize,
  containsCidr,
  containsIp,
  formatCidr,
  formatIp,
  normalizeIp,
  nthAddress,
  nthSubnet,
  overlaps,
  parseCidr,
  parseCidrKey,
  parseIp,
  subnetCount,
  subnetIndex,
} from "./addr.ts";

Deno.test("addresses parse strictly and format canonically", () => {
  assertEquals(parseIp("10.1.2.3"), { family: 4, value: 0x0a010203n });
  assertEquals(normalizeIp("fd00:0:0::0:1"), "fd00::1");
  assertEquals(formatIp(6, 1n), "::1");
  for (const bad of ["10.1.2", "10.258", "0x0a.1.2.3", "1.2.3.256", "fe80::1%eth0", "", "x"]) {
    assertThrows(() => parseIp(bad), RangeError);
  }
});

Deno.test("CIDRs clear host bits, and bad prefixes name the text", () => {
  assertEquals(formatCidr(parseCidr("10.1.2.5/24")), "10.1.2.0/24");
  assertEquals(formatCidr(parseCidr("fd00:1:2:3::9/64")), "fd00:1:2:3::/64");
  const e = assertThrows(() => parseCidr("10.0.0.0/33"), RangeError);
  assert(e.message.includes("10.0.0.0/33"));
  assertThrows(() => parseCidr("10.0.0.0"), RangeError);
  assertThrows(() => parseCidr("10.0.0.0/"), RangeError);
});

Deno.test("containment and overlap across families", () => {
  const pool = parseCidr("10.244.0.0/16");
  assert(containsIp(pool, parseIp("10.244.255.255")));
  assert(!containsIp(pool, parseIp("10.245.0.0")));
  assert(!containsIp(pool, parseIp("::a")));
  assert(containsCidr(pool, parseCidr("10.244.3.0/24")));
  assert(!containsCidr(parseCidr("10.244.3.0/24"), pool));
  assert(overlaps(parseCidr("10.0.0.0/8"), parseCidr("10.9.0.0/16")));
  assert(!overlaps(parseCidr("10.0.0.0/8"), parseCidr("fd00::/8")));
});

Deno.test("a /48 of /64 blocks is handled arithmetically", () => {
  const pool = parseCidr("fd00:10:20::/48");
  assertEquals(subnetCount(pool, 64), 65536n);
  const last = nthSubnet(pool, 64, 65535n);
  assertEquals(formatCidr(last), "fd00:10:20:ffff::/64");
  assertEquals(subnetIndex(pool, 64, last), 65535n);
  assertEquals(cidrSize(last), 1n << 64n);
  assertEquals(
    formatIp(6, nthAddress(last, (1n << 64n) - 1n)),
    "fd00:10:20:ffff:ffff:ffff:ffff:ffff",
  );
  assertThrows(() => nthSubnet(pool, 64, 65536n), RangeError);
});

Deno.test("cidr keys are one path segment and round-trip", () => {
  for (const text of ["10.244.1.0/24", "fd00:10:20:ffff::/64"]) {
    const c = parseCidr(text);
    const k = cidrKey(c);
    assert(!k.includes("/"));
    assertEquals(formatCidr(parseCidrKey(k)), text);
  }
});

Deno.test("parseIp's own IPv4 parser agrees with ipaddr.js, edge cases and 2,000 random", () => {
  const viaIpaddr = (s: string) => {
    const t = s.trim();
    if (!ipaddr.IPv4.isValidFourPartDecimal(t)) return "refused";
    return ipaddr.IPv4.parse(t).toByteArray().reduce((v, b) => v * 256n + BigInt(b), 0n);
  };
  const ours = (s: string) => {
    try {
      const ip = parseIp(s);
      return ip.family === 4 ? ip.value : "v6";
    } catch {
      return "refused";
    }
  };
  const cases = [
    "0.0.0.0",
    "255.255.255.255",
    "10.244.3.7",
    " 10.0.0.1 ",
    "256.1.1.1",
    "1.2.3.256",
    "01.2.3.4",
    "1.2.3.04",
    "1.2.3",
    "1.2.3.4.5",
    "1..2.3",
    "1.2.3.4/24",
    "999.999.999.999",
    "1000.1.1.1",
    "0x1.2.3.4",
    "",
  ];
  for (let i = 0; i < 2000; i++) {
    cases.push(Array.from({ length: 4 }, () => Math.floor(Math.random() * 300)).join("."));
  }
  for (const c of cases) assertEquals(ours(c), viaIpaddr(c), JSON.stringify(c));
});
