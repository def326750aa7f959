import { assert, assertEquals, assertRejects, assertThrows } from "../tests/support/assert.ts";
import {
  AddressUnavailableError,
  HandleExistsError,
  IpamConfigError,
  IpamExhaustedError,
} from "./errors.ts";
import { MemoryStore } from "./memory.ts";
import { parseRangeSets, RangeAllocator } from "./ranges.ts";

function alloc(ranges: unknown, network = "net1") {
  return new RangeAllocator(new MemoryStore(), network, parseRangeSets(ranges));
}

Deno.test("defaults: start at .2 (gateway .1 excluded), end before broadcast", async () => {
  const a = alloc([[{ subnet: "10.22.0.0/29" }]]);
  const got: string[] = [];
  for (let i = 0; i < 5; i++) {
    const [ip] = await a.allocate({ containerID: `c${i}`, ifname: "eth0" });
    got.push(ip!.address);
    assertEquals(ip!.gateway, "10.22.0.1");
  }
  assertEquals(got, [
    "10.22.0.2/29",
    "10.22.0.3/29",
    "10.22.0.4/29",
    "10.22.0.5/29",
    "10.22.0.6/29",
  ]);
  const e = await assertRejects(
    () => a.allocate({ containerID: "c9", ifname: "eth0" }),
    IpamExhaustedError,
  );
  assert(e.message.includes("10.22.0.0/29") && e.message.includes("net1"), e.message);
});

Deno.test("round robin: a released address is not reused until the range wraps", async () => {
  const a = alloc([[{ subnet: "10.22.0.0/29" }]]);
  await a.allocate({ containerID: "a", ifname: "eth0" }); // .2
  await a.allocate({ containerID: "b", ifname: "eth0" }); // .3
  assertEquals(await a.release({ containerID: "a", ifname: "eth0" }), ["10.22.0.2"]);
  const [c] = await a.allocate({ containerID: "c", ifname: "eth0" });
  assertEquals(c!.ip, "10.22.0.4");
});

Deno.test("dual stack: one address per range set, each with its gateway", async () => {
  const a = alloc([
    [{ subnet: "10.30.0.0/24" }],
    [{ subnet: "fd00:30::/64", gateway: "fd00:30::ff" }],
  ]);
  const ips = await a.allocate({ containerID: "c", ifname: "eth0" });
  assertEquals(ips.map((i) => [i.family, i.address, i.gateway]), [
    [4, "10.30.0.2/24", "10.30.0.1"],
    [6, "fd00:30::1/64", "fd00:30::ff"],
  ]);
  assertEquals(await a.get({ containerID: "c", ifname: "eth0" }), ips);
});

Deno.test("an attachment cannot allocate twice; release is idempotent", async () => {
  const a = alloc([[{ subnet: "10.22.0.0/24" }]]);
  await a.allocate({ containerID: "c", ifname: "eth0" });
  const e = await assertRejects(
    () => a.allocate({ containerID: "c", ifname: "eth0" }),
    HandleExistsError,
  );
  assertEquals(e.ips, ["10.22.0.2"]);
  // Same container, other interface: a different attachment.
  await a.allocate({ containerID: "c", ifname: "net1" });
  assertEquals(await a.release({ containerID: "c", ifname: "eth0" }), ["10.22.0.2"]);
  assertEquals(await a.release({ containerID: "c", ifname: "eth0" }), []);
  assertEquals(await a.release({ containerID: "never", ifname: "eth0" }), []);
  assertEquals((await a.list()).map((h) => h.ifname), ["net1"]);
});

Deno.test("static requests: honoured when free and in range, refused otherwise", async () => {
  const a = alloc([[{ subnet: "10.22.0.0/24", rangeStart: "10.22.0.10", rangeEnd: "10.22.0.20" }]]);
  const [ip] = await a.allocate({ containerID: "s", ifname: "eth0", requestedIPs: ["10.22.0.15"] });
  assertEquals(ip!.ip, "10.22.0.15");
  await assertRejects(
    () => a.allocate({ containerID: "t", ifname: "eth0", requestedIPs: ["10.22.0.15"] }),
    AddressUnavailableError,
    "in use",
  );
  await assertRejects(
    () => a.allocate({ containerID: "t", ifname: "eth0", requestedIPs: ["10.22.0.50"] }),
    AddressUnavailableError,
    "not in any range",
  );
  await assertRejects(
    () => a.allocate({ containerID: "t", ifname: "eth0", requestedIPs: ["10.22.0.1"] }),
    AddressUnavailableError,
  );
  // The failed requests wrote nothing.
  assertEquals((await a.list()).length, 1);
});

Deno.test("GC releases every attachment not in the valid list", async () => {
  const a = alloc([[{ subnet: "10.22.0.0/24" }]]);
  for (const id of ["a", "b", "c"]) await a.allocate({ containerID: id, ifname: "eth0" });
  const r = await a.gc([{ containerID: "b", ifname: "eth0" }]);
  assertEquals(r.released.map((h) => h.containerID).sort(), ["a", "c"]);
  assertEquals(r.errors, []);
  assertEquals((await a.list()).map((h) => h.containerID), ["b"]);
  assertEquals((await a.free())[0], 252n);
});

Deno.test("32 concurrent allocations on one store are all distinct", async () => {
  const a = alloc([[{ subnet: "10.40.0.0/24" }]]);
  const all = await Promise.all(
    Array.from({ length: 32 }, (_, i) => a.allocate({ containerID: `c${i}`, ifname: "eth0" })),
  );
  assertEquals(new Set(all.map((x) => x[0]!.ip)).size, 32);
});

Deno.test("networks sharing a store do not see each other's addresses", async () => {
  const store = new MemoryStore();
  const sets = parseRangeSets([[{ subnet: "10.50.0.0/24" }]]);
  const a = new RangeAllocator(store, "a", sets);
  const b = new RangeAllocator(store, "b", sets);
  assertEquals((await a.allocate({ containerID: "x", ifname: "eth0" }))[0]!.ip, "10.50.0.2");
  assertEquals((await b.allocate({ containerID: "x", ifname: "eth0" }))[0]!.ip, "10.50.0.2");
});

Deno.test("bad range configs name the field and the value", () => {
  const cases: [unknown, string][] = [
    [[], "ipam.ranges"],
    [[[]], "ipam.ranges[0]"],
    [[[{ subnet: "10.0.0.0/33" }]], "ipam.ranges[0][0].subnet"],
    [[[{ subnet: "10.0.0.0/31" }]], "ipam.ranges[0][0].subnet"],
    [[[{ subnet: "10.0.0.0/24", rangeStart: "10.0.1.5" }]], "ipam.ranges[0][0].rangeStart"],
    [[[{ subnet: "10.0.0.0/24", rangeStart: "10.0.0.9", rangeEnd: "10.0.0.5" }]], "rangeStart"],
    [[[{ subnet: "10.0.0.0/24", gateway: "nope" }]], "ipam.ranges[0][0].gateway"],
    [[[{ subnet: "10.0.0.0/24" }, { subnet: "fd00::/64" }]], "ipam.ranges[0][1].subnet"],
    [[[{ subnet: "10.0.0.0/16" }], [{ subnet: "10.0.5.0/24" }]], "ipam.ranges[1][0]"],
    [[[{ subnet: "0.0.0.0/0" }]], "0.0.0.0/0 covers every address"],
    [[[{ subnet: "::/0" }]], "::/0 covers every address"],
    [[[{ subnet: "127.0.0.0/16" }]], "overlaps 127.0.0.0/8"],
    [[[{ subnet: "0.0.0.0/8" }]], "overlaps 0.0.0.0/8"],
    [[[{ subnet: "fe80::/64" }]], "overlaps fe80::/10"],
    [[[{ subnet: "::/120" }]], "overlaps ::/128"],
  ];
  for (const [spec, field] of cases) {
    const e = assertThrows(() => parseRangeSets(spec), IpamConfigError);
    assert(e.message.includes(field), `${JSON.stringify(spec)} → ${e.message}`);
  }
});

Deno.test("bad attachments are refused before touching the store", async () => {
  const a = alloc([[{ subnet: "10.22.0.0/24" }]]);
  for (const [containerID, ifname] of [["", "eth0"], ["../x", "eth0"], ["ok", "a/b"]]) {
    await assertRejects(
      () => a.allocate({ containerID: containerID!, ifname: ifname! }),
      TypeError,
    );
  }
});
