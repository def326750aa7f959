import { assertEquals } from "../tests/support/assert.ts";
import { parseCidr } from "./addr.ts";
import { type AddressRange, capacity, pickNext } from "./pick.ts";

function range(cidr: string, first: bigint, last: bigint, exclude: bigint[] = []): AddressRange {
  const subnet = parseCidr(cidr);
  return { family: subnet.family, subnet, first, last, exclude: new Set(exclude) };
}

Deno.test("round robin continues after the cursor and wraps", () => {
  const r = [range("10.0.0.0/29", 1n, 6n, [1n])];
  assertEquals(pickNext(r, new Set())?.ip, 2n);
  assertEquals(pickNext(r, new Set(), 2n)?.ip, 3n);
  assertEquals(pickNext(r, new Set([3n, 4n]), 2n)?.ip, 5n);
  assertEquals(pickNext(r, new Set([2n]), 6n)?.ip, 3n, "wraps past the gateway and used");
  assertEquals(pickNext(r, new Set([2n, 3n, 4n, 5n, 6n]), 4n), undefined);
});

Deno.test("round robin moves across ranges of a set", () => {
  const r = [range("10.0.0.0/29", 1n, 2n), range("10.0.1.0/29", 257n, 258n)];
  assertEquals(pickNext(r, new Set([257n]), 2n), { range: 1, ip: 258n });
  assertEquals(pickNext(r, new Set(), 258n), { range: 0, ip: 1n });
  assertEquals(capacity(r), 4n);
});

Deno.test("a /64 with few addresses used is not enumerated", () => {
  const base = parseCidr("fd00::/64").network;
  const r = [range("fd00::/64", base + 1n, base + (1n << 64n) - 1n, [base + 1n])];
  const used = new Set<bigint>([base + 2n, base + 3n]);
  assertEquals(pickNext(r, used, base + 1n)?.ip, base + 4n);
  assertEquals(pickNext(r, new Set(), base + (1n << 64n) - 1n)?.ip, base + 2n);
  assertEquals(capacity(r), (1n << 64n) - 2n);
});
