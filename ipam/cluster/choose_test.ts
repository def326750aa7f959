import { assertEquals, assertThrows } from "../../tests/support/assert.ts";
import { type Family, formatCidr, formatIp, parseCidr, parseIp } from "../addr.ts";
import { AddressUnavailableError, IpamExhaustedError } from "../errors.ts";
import { chooseAddress, type FamilyInput } from "./choose.ts";
import { K } from "./keys.ts";
import type { BlockKv, Pool } from "./types.ts";

const pool = (cidr: string, blockPrefix: number): Pool => ({
  cidr,
  family: parseCidr(cidr).family,
  blockPrefix,
  createdAt: "t",
});
const block = (cidr: string, node: string, pool: string): BlockKv => ({
  kv: { key: K.block(parseCidr(cidr)), value: "", createRevision: 1, modRevision: 7 },
  value: { cidr, pool, node, claimedAt: "t" },
});
const ips = (...t: string[]) => t.map((x) => parseIp(x).value);

const P4 = pool("10.244.0.0/16", 29);
const P6 = pool("fd00:244::/48", 126);
const A1 = block("10.244.0.0/29", "a", P4.cidr);
const A2 = block("10.244.0.8/29", "a", P4.cidr);
const B1 = block("10.244.0.16/29", "b", P4.cidr);

function input(over: Partial<FamilyInput>): FamilyInput {
  return {
    family: 4 as Family,
    node: "a",
    requested: [],
    pools: [P4, P6],
    blocks: [A1, A2, B1],
    reserved: new Set(),
    mine: [{ block: A1, used: [] }, { block: A2, used: [] }],
    ...over,
  };
}

/** The choice as text: `ip in block`, then `(claim in pool)`, `(owner)`, `+cursor`. */
function choice(i: FamilyInput): string {
  const c = chooseAddress(i);
  return `${formatIp(c.block.family, c.ip)} in ${formatCidr(c.block)}${
    c.owner ? ` owner ${c.owner.value.node}` : ` claim in ${c.pool!.cidr}`
  }${c.next ? " +cursor" : ""}`;
}

Deno.test("choice: next free address of the node's blocks, round robin from the cursor", () => {
  const table: [string, Partial<FamilyInput>, string | RegExp][] = [
    [
      "empty blocks: the first after the gateway",
      {},
      "10.244.0.2 in 10.244.0.0/29 owner a +cursor",
    ],
    [
      "after the cursor",
      { cursor: ips("10.244.0.4")[0] },
      "10.244.0.5 in 10.244.0.0/29 owner a +cursor",
    ],
    [
      "used addresses skipped",
      { mine: [{ block: A1, used: ips("10.244.0.2", "10.244.0.3") }, { block: A2, used: [] }] },
      "10.244.0.4 in 10.244.0.0/29 owner a +cursor",
    ],
    [
      "reserved addresses skipped",
      { reserved: new Set(["10.244.0.2"]) },
      "10.244.0.3 in 10.244.0.0/29 owner a +cursor",
    ],
    [
      "past the broadcast into the next block",
      { cursor: ips("10.244.0.6")[0] },
      "10.244.0.10 in 10.244.0.8/29 owner a +cursor",
    ],
    [
      "wraps to the first block",
      { cursor: ips("10.244.0.14")[0], mine: [{ block: A1, used: [] }, { block: A2, used: [] }] },
      "10.244.0.2 in 10.244.0.0/29 owner a +cursor",
    ],
    [
      "full blocks: a new block's first pod address, claimed in the pool",
      {
        mine: [{
          block: A1,
          used: ips("10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5", "10.244.0.6"),
        }],
        blocks: [A1],
      },
      // A claimed block's place depends on the node's hash: its shape is what is fixed.
      /^10\.244\.\d+\.\d+ in 10\.244\.\d+\.\d+\/29 claim in 10\.244\.0\.0\/16 \+cursor$/,
    ],
    [
      "IPv6: a block of its own pool",
      { family: 6, mine: [], blocks: [] },
      /^fd00:244:\S+ in fd00:244:\S+\/126 claim in fd00:244::\/48 \+cursor$/,
    ],
  ];
  for (const [what, over, want] of table) {
    const got = choice(input(over));
    if (typeof want === "string") assertEquals(got, want, what);
    else assertEquals(want.test(got), true, `${what}: ${got}`);
  }
});

Deno.test("choice: a full block claims another, never a taken one, and says so when none is left", () => {
  const small = pool("10.9.0.0/28", 29); // two /29 blocks
  const c1 = block("10.9.0.0/29", "a", small.cidr);
  const c2 = block("10.9.0.8/29", "b", small.cidr);
  const full = ips("10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6");
  const one = { pools: [small], blocks: [c1], mine: [{ block: c1, used: full }] };
  assertEquals(choice(input(one)), "10.9.0.10 in 10.9.0.8/29 claim in 10.9.0.0/28 +cursor");
  const none = { pools: [small], blocks: [c1, c2], mine: [{ block: c1, used: full }] };
  const e = assertThrows(() => chooseAddress(input(none)), IpamExhaustedError);
  assertEquals(
    e.message,
    "no free IPv4 address for node a: its blocks are full and pool 10.9.0.0/28 has no free block",
  );
});

Deno.test("choice: requested addresses, honoured or refused with the reason", () => {
  const req = (t: string[], over: Partial<FamilyInput> = {}) =>
    input({ requested: t.map(parseIp), ...over });
  assertEquals(choice(req(["10.244.0.11"])), "10.244.0.11 in 10.244.0.8/29 owner a");
  assertEquals(
    choice(req(["10.244.0.42"])),
    "10.244.0.42 in 10.244.0.40/29 claim in 10.244.0.0/16",
  );
  const refused: [string, FamilyInput, string][] = [
    ["two of a family", req(["10.244.0.9", "10.244.0.10"]), "more than one IPv4 address requested"],
    ["outside every pool", req(["10.99.0.9"]), "requested address 10.99.0.9 is not in any pool"],
    [
      "reserved",
      req(["10.244.0.9"], { reserved: new Set(["10.244.0.9"]) }),
      "requested address 10.244.0.9 is reserved",
    ],
    [
      "the gateway",
      req(["10.244.0.1"]),
      "requested address 10.244.0.1 is the network, gateway or broadcast address of block 10.244.0.0/29",
    ],
    [
      "the broadcast",
      req(["10.244.0.15"]),
      "requested address 10.244.0.15 is the network, gateway or broadcast address of block 10.244.0.8/29",
    ],
    [
      "another node's block",
      req(["10.244.0.18"]),
      "requested address 10.244.0.18 is in block 10.244.0.16/29 of node b",
    ],
  ];
  for (const [what, i, message] of refused) {
    const e = assertThrows(() => chooseAddress(i), AddressUnavailableError);
    assertEquals(e.message, message, what);
  }
});
