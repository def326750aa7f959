import { assert, assertEquals, assertThrows } from "../tests/support/assert.ts";
import { loadNetConf } from "./config.ts";
import { CniError } from "./errors.ts";

const base = {
  cniVersion: "1.0.0",
  name: "net",
  type: "ohno",
  ipam: { type: "ohno", ranges: [[{ subnet: "10.1.0.0/24" }]] },
};
const load = (o: Record<string, unknown>, forIpamFace = false) =>
  loadNetConf(JSON.stringify(o), { forIpamFace });

Deno.test("defaults: bridge ohno0, gateway and default gateway on, no hairpin, no masquerade", () => {
  const c = load(base);
  assertEquals(
    [c.bridge, c.isGateway, c.isDefaultGateway, c.hairpinMode, c.ipMasq, c.mtu],
    ["ohno0", true, true, false, false, undefined],
  );
  assertEquals(c.ipam.mode, "embedded");
  if (c.ipam.mode === "embedded") assertEquals(c.ipam.dataDir, "/var/lib/ohno/ipam");
});

Deno.test("host-local's single-subnet form converts to one range set", () => {
  const c = load({ ...base, ipam: { type: "ohno", subnet: "10.2.0.0/16", gateway: "10.2.0.254" } });
  assert(c.ipam.mode === "embedded");
  assertEquals(c.ipam.sets.length, 1);
  assertEquals(c.ipam.sets[0]![0]!.gateway, 0x0a0200fen);
});

Deno.test("a type other than ohno delegates; daemonSocket asks the agent", () => {
  assertEquals(load({ ...base, ipam: { type: "host-local" } }).ipam.mode, "delegate");
  const a = load({ ...base, ipam: { type: "ohno", daemonSocket: "/run/ohno/ipam.sock" } });
  assertEquals(a.ipam, { mode: "agent", type: "ohno", socket: "/run/ohno/ipam.sock", routes: [] });
});

Deno.test("static addresses and MAC from runtimeConfig win over args.cni", () => {
  const c = load({
    ...base,
    runtimeConfig: { ips: ["10.1.0.9/24"], mac: "0A:58:00:00:00:01" },
    args: { cni: { ips: ["10.1.0.8"] } },
  });
  assertEquals([c.requestedIPs, c.mac], [["10.1.0.9"], "0a:58:00:00:00:01"]);
});

Deno.test("errors name the field and the value, with the spec's codes", () => {
  const cases: [Record<string, unknown>, number, string][] = [
    [{ ...base, cniVersion: "0.1.0" }, 1, "0.1.0"],
    [{ ...base, vlan: 7 }, 2, "vlan=7"],
    [{ ...base, mtu: 99999 }, 7, "mtu 99999"],
    [{ ...base, bridge: "x".repeat(16) }, 7, "bridge"],
    [
      { ...base, ipam: { type: "ohno", ranges: [[{ subnet: "300.0.0.0/8" }]] } },
      7,
      "ipam.ranges[0][0].subnet",
    ],
  ];
  for (const [doc, code, part] of cases) {
    const e = assertThrows(() => load(doc), CniError);
    assertEquals(e.code, code, e.message);
    assert(e.message.includes(part), `${e.message} should name ${part}`);
  }
});

Deno.test("the ohno-ipam face ignores the main plugin's keys", () => {
  const c = load({ ...base, type: "bridge", bridge: "x".repeat(20), vlan: 3 }, true);
  assertEquals(c.ipam.mode, "embedded");
});

Deno.test("GC reads both attachment keys", () => {
  const a = [{ containerID: "c", ifname: "eth0" }];
  assertEquals(load({ ...base, "cni.dev/valid-attachments": a }).validAttachments, a);
  assertEquals(load({ ...base, "cni.dev/attachments": a }).validAttachments, a);
  assertEquals(load(base).validAttachments, undefined);
});

Deno.test("mode: bridge by default; macvlan and ipvlan with their keys and defaults", () => {
  assertEquals([load(base).mode, load(base).slave], ["bridge", undefined]);
  const m = load({ ...base, mode: "macvlan" });
  assertEquals([m.mode, m.slave], ["macvlan", {
    kind: "macvlan",
    linkMode: "bridge",
    hostShim: false,
  }]);
  const v = load({
    ...base,
    mode: "ipvlan",
    master: "ens3",
    ipvlanMode: "l3s",
    hostShim: true,
    isGateway: false,
  });
  assertEquals(v.slave, { kind: "ipvlan", master: "ens3", linkMode: "l3s", hostShim: true });
});

Deno.test("mode: bad values are error 7 naming the field", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ mode: "vxlan" }, 'mode "vxlan" is not a pod mode'],
    [{ mode: 3 }, "mode 3 is not a pod mode"],
    [{ mode: "macvlan", macvlanMode: "l3" }, 'macvlanMode "l3" is not one of the macvlan modes'],
    [{ mode: "ipvlan", ipvlanMode: "vepa" }, 'ipvlanMode "vepa" is not one of the ipvlan modes'],
    [{ mode: "ipvlan", macvlanMode: "bridge" }, "macvlanMode"],
    [{ mode: "macvlan", master: "a/b" }, "master"],
    [{ mode: "macvlan", macvlanMode: "vepa", hostShim: true }, "hostShim true needs"],
    [{ mode: "macvlan", ipMasq: true }, "ipMasq true has no effect in macvlan mode"],
    [{ mode: "ipvlan", runtimeConfig: { mac: "02:00:00:00:00:01" } }, "runtimeConfig.mac"],
  ];
  for (const [extra, msg] of cases) {
    const e = assertThrows(() => load({ ...base, ...extra }), CniError);
    assertEquals(e.code, 7, JSON.stringify(extra));
    assert(e.message.includes(msg), `${e.message} should name ${msg}`);
  }
});
