import { assertEquals } from "../tests/support/assert.ts";
import { hostCommands } from "./bridge.ts";
import { podRoutes } from "./driver.ts";
import { podCommands } from "./iplinks.ts";

Deno.test("host plan: create the bridge only when missing, veth straight into the pod", () => {
  const plan = {
    bridge: "ohno0",
    createBridge: false,
    bridgeMac: "02:00:00:00:00:01",
    mtu: 1450,
    gateways: [{ family: 4 as const, cidr: "10.1.0.1/24" }, {
      family: 6 as const,
      cidr: "fd00::1/64",
    }],
    hostVeth: "veth0123456789a",
    ifname: "eth0",
    podNetns: "/var/run/netns/p",
    hairpin: true,
    promisc: false,
  };
  const c = hostCommands(plan).map((x) => x.join(" "));
  assertEquals(c, [
    "link set dev ohno0 up",
    "addr replace 10.1.0.1/24 dev ohno0",
    "addr replace fd00::1/64 dev ohno0 nodad",
    "link add veth0123456789a mtu 1450 type veth peer name eth0 mtu 1450 netns /var/run/netns/p",
    "link set dev veth0123456789a master ohno0",
    "link set dev veth0123456789a type bridge_slave hairpin on",
    "link set dev veth0123456789a up",
    "link show dev ohno0",
    "link show dev veth0123456789a",
  ]);
  const created = hostCommands({ ...plan, createBridge: true })[0]!.join(" ");
  assertEquals(created, "link add name ohno0 address 02:00:00:00:00:01 mtu 1450 type bridge");
});

Deno.test("pod routes: one default per family, configured routes use the family gateway", () => {
  const routes = podRoutes(
    [{ family: 4, gw: "10.1.0.1" }, { family: 6, gw: "fd00::1" }],
    true,
    [{ dst: "0.0.0.0/0" }, { dst: "10.96.0.0/12" }, { dst: "fd00:96::/108", gw: "fd00::fe" }],
  );
  assertEquals(routes, [
    { dst: "0.0.0.0/0", gw: "10.1.0.1" },
    { dst: "::/0", gw: "fd00::1" },
    { dst: "10.96.0.0/12", gw: "10.1.0.1" },
    { dst: "fd00:96::/108", gw: "fd00::fe" },
  ]);
  const c = podCommands({
    ifname: "eth0",
    addresses: [{ family: 6, cidr: "fd00::2/64" }],
    routes: [],
  });
  assertEquals(c.map((x) => x.join(" ")), [
    "link set lo up",
    "addr add fd00::2/64 dev eth0 nodad",
    "link set dev eth0 up",
    "link show dev eth0",
  ]);
});
