import { assertEquals } from "../tests/support/assert.ts";
import {
  hostCidr,
  shimCommands,
  shimName,
  shimPodRoutes,
  slaveCommands,
  subnetsOf,
} from "./macvlan.ts";

Deno.test("slave plan: one link add, straight into the pod under its final name", () => {
  const c = slaveCommands({
    kind: "macvlan",
    master: "eth0",
    linkMode: "bridge",
    ifname: "eth0",
    podNetns: "/var/run/netns/p",
    mtu: 1450,
    podMac: "02:00:00:00:00:05",
  }).map((x) => x.join(" "));
  assertEquals(c, [
    "link add name eth0 link eth0 mtu 1450 address 02:00:00:00:00:05 netns /var/run/netns/p type macvlan mode bridge",
  ]);
  const i = slaveCommands({
    kind: "ipvlan",
    master: "ens3",
    linkMode: "l3s",
    ifname: "net1",
    podNetns: "/p",
    mtu: 9000,
  }).map((x) => x.join(" "));
  assertEquals(i, ["link add name net1 link ens3 mtu 9000 netns /p type ipvlan mode l3s"]);
});

Deno.test("shim plan: created once holding the node's addresses, routes every ADD", () => {
  const name = shimName("macvlan", "ens3");
  assertEquals(name.length, 15);
  assertEquals(name, shimName("macvlan", "ens3"));
  assertEquals(name === shimName("ipvlan", "ens3"), false);
  const plan = {
    kind: "macvlan" as const,
    name,
    master: "ens3",
    linkMode: "private",
    create: true,
    nodeAddrs: ["192.0.2.4/32", "fd00::4/128"],
    subnets: ["10.5.0.0/24"],
  };
  assertEquals(shimCommands(plan).map((x) => x.join(" ")), [
    `link add name ${name} link ens3 type macvlan mode bridge`,
    `addr replace 192.0.2.4/32 dev ${name} noprefixroute`,
    `addr replace fd00::4/128 dev ${name} noprefixroute nodad`,
    `link set dev ${name} up`,
    `route replace 10.5.0.0/24 dev ${name}`,
  ]);
  assertEquals(shimCommands({ ...plan, create: false }).map((x) => x.join(" ")), [
    `route replace 10.5.0.0/24 dev ${name}`,
  ]);
});

Deno.test("pod subnets and the pod's on-link routes to the node", () => {
  assertEquals(subnetsOf(["10.5.0.7/24", "10.5.0.9/24", "fd00:5::3/64"]), [
    "10.5.0.0/24",
    "fd00:5::/64",
  ]);
  assertEquals(hostCidr("fd00::1"), "fd00::1/128");
  assertEquals(shimPodRoutes(["192.0.2.4", "fd00::4"], [4]), [{ dst: "192.0.2.4/32" }]);
});
