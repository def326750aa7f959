import { assertEquals } from "../tests/support/assert.ts";
import { formatResult, mergeResults, parseResult, type Result } from "./result.ts";

const r: Result = {
  interfaces: [{ name: "br", mac: "02:00:00:00:00:01", mtu: 1500 }, {
    name: "eth0",
    mac: "02:00:00:00:00:02",
    sandbox: "/ns",
    mtu: 1500,
  }],
  ips: [{ address: "10.0.0.2/24", gateway: "10.0.0.1", interface: 1 }, {
    address: "fd00::2/64",
    interface: 1,
  }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1", mtu: 1400 }],
  dns: {},
};

Deno.test("0.4.0 results carry ips[].version and no 1.1 fields; empty dns is omitted", () => {
  const o = formatResult(r, "0.4.0");
  assertEquals((o.ips as { version: string }[]).map((i) => i.version), ["4", "6"]);
  assertEquals((o.interfaces as { mtu?: number }[])[0]?.mtu, undefined);
  assertEquals((o.routes as { mtu?: number }[])[0]?.mtu, undefined);
  assertEquals(o.dns, undefined);
});

Deno.test("1.0.0 drops version; 1.1.0 keeps interface and route mtu", () => {
  assertEquals((formatResult(r, "1.0.0").ips as { version?: string }[])[0]?.version, undefined);
  const o = formatResult(r, "1.1.0");
  assertEquals((o.interfaces as { mtu?: number }[])[1]?.mtu, 1500);
  assertEquals((o.routes as { mtu?: number }[])[0]?.mtu, 1400);
});

Deno.test("a 0.3.1 prevResult parses back and chains with renumbered interfaces", () => {
  const prev = parseResult(formatResult(r, "0.3.1"));
  const mine: Result = {
    interfaces: [{ name: "x" }],
    ips: [{ address: "10.9.0.2/24", interface: 0 }],
  };
  const m = mergeResults(prev, mine);
  assertEquals(m.interfaces?.map((i) => i.name), ["br", "eth0", "x"]);
  assertEquals(m.ips?.map((i) => i.interface), [1, 1, 2]);
});
