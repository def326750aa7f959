import { assertEquals } from "../../tests/support/assert.ts";
import { parseCidr } from "../addr.ts";
import type { AddressRecord } from "../records.ts";
import { checkSnapshot, type Snapshot } from "./check.ts";
import { K } from "./keys.ts";
import type { ClusterHandle } from "./types.ts";

const blockOf = (cidr: string, node: string) => ({
  key: K.block(parseCidr(cidr)),
  block: { cidr, pool: "10.244.0.0/16", node, claimedAt: "t" },
});
const ipKey = (block: string, ip: string) => K.ip(parseCidr(block), ip);
const addr = (block: string, ip: string, containerID: string, node = "a") => ({
  key: ipKey(block, ip),
  rec: { containerID, ifname: "eth0", ip, node, createdAt: "t" } as AddressRecord,
});
const handle = (containerID: string, ips: [string, string][], node = "a") => {
  const h: ClusterHandle = {
    containerID,
    ifname: "eth0",
    ips: ips.map(([, ip]) => ip),
    keys: ips.map(([b, ip]) => ipKey(b, ip)),
    node,
    createdAt: "t",
  };
  return { key: K.handle(h), handle: h };
};

/** A consistent cluster: two nodes, one pod each. */
function healthy(): Snapshot {
  return {
    pools: [{ cidr: "10.244.0.0/16", family: 4, blockPrefix: 24, createdAt: "t" }],
    blocks: [blockOf("10.244.1.0/24", "a"), blockOf("10.244.2.0/24", "b")],
    addresses: [
      addr("10.244.1.0/24", "10.244.1.2", "p1"),
      addr("10.244.2.0/24", "10.244.2.2", "p2", "b"),
    ],
    handles: [
      handle("p1", [["10.244.1.0/24", "10.244.1.2"]]),
      handle("p2", [["10.244.2.0/24", "10.244.2.2"]], "b"),
    ],
    reserved: [],
    nodes: 2,
  };
}

Deno.test("check: a consistent snapshot has no problem, and is counted", () => {
  assertEquals(checkSnapshot(healthy()), {
    ok: true,
    counts: { pools: 1, blocks: 2, nodes: 2, handles: 2, addresses: 2 },
    problems: [],
  });
});

Deno.test("check: each broken rule is one problem of its kind, on its key", () => {
  const cases: [string, (s: Snapshot) => void, [string, string][]][] = [
    ["handle gone", (s) => s.handles.splice(0, 1), [[
      "orphan-address",
      ipKey("10.244.1.0/24", "10.244.1.2"),
    ]]],
    [
      "record gone",
      (s) => s.addresses.splice(0, 1),
      [["missing-address", K.handle({ containerID: "p1", ifname: "eth0" })]],
    ],
    [
      "record names another attachment",
      (s) => (s.addresses[0]!.rec.containerID = "p9"),
      [
        ["orphan-address", ipKey("10.244.1.0/24", "10.244.1.2")],
        ["missing-address", K.handle({ containerID: "p1", ifname: "eth0" })],
      ],
    ],
    [
      "address of a block nobody claimed",
      (s) => s.blocks.splice(0, 1),
      [["address-outside-block", ipKey("10.244.1.0/24", "10.244.1.2")]],
    ],
    [
      "address in another node's block",
      (s) => (s.blocks[0]!.block.node = "b"),
      [["address-in-foreign-block", ipKey("10.244.1.0/24", "10.244.1.2")]],
    ],
    ["block outside the pools", (s) => s.blocks.push(blockOf("10.9.0.0/24", "c")), [[
      "block-outside-pool",
      K.block(parseCidr("10.9.0.0/24")),
    ]]],
    [
      "overlapping blocks",
      (s) => s.blocks.push(blockOf("10.244.1.0/25", "c")),
      [["block-overlap", K.block(parseCidr("10.244.1.0/25"))]],
    ],
    [
      "reserved but allocated",
      (s) => s.reserved.push("10.244.2.2"),
      [["reserved-allocated", ipKey("10.244.2.0/24", "10.244.2.2")]],
    ],
  ];
  for (const [what, breakIt, want] of cases) {
    const s = healthy();
    breakIt(s);
    const r = checkSnapshot(s);
    assertEquals(r.ok, false, what);
    assertEquals(r.problems.map((p) => [p.kind, p.key]), want, what);
  }
});

Deno.test("check: a handle address with no key of its own is missing", () => {
  const s = healthy();
  s.handles[0]!.handle.ips.push("10.244.1.3");
  assertEquals(checkSnapshot(s).problems, [{
    kind: "missing-address",
    key: K.handle({ containerID: "p1", ifname: "eth0" }),
    message: "p1/eth0 holds 10.244.1.3, which has no address key in its handle",
  }]);
});
