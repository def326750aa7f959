import { assertEquals } from "../tests/support/assert.ts";
import { hostCidr, shimName, shimPodRoutes, shimSteps, slaveSteps, subnetsOf } from "./macvlan.ts";

Deno.test("slave plan: one link add, straight into the pod under its final name", () => {
  const c = slaveSteps({
    kind: "macvlan",
    master: "eth0",
    linkMode: "bridge",
    ifname: "eth0",
    podNetns: "/var/run/netns/p",
    mtu: 1450,
    podMac: "02:00:00:00:00:05",
  });
  assertEquals(c, [{
    op: "link-add",
    link: {
      kind: "macvlan",
      name: "eth0",
      link: "eth0",
      mode: "bridge",
      mtu: 1450,
      mac: "02:00:00:00:00:05",
      inPod: true,
    },
  }]);
  const i = slaveSteps({
    kind: "ipvlan",
    master: "ens3",
    linkMode: "l3s",
    ifname: "net1",
    podNetns: "/p",
    mtu: 9000,
  });
  assertEquals(i, [{
    op: "link-add",
    link: { kind: "ipvlan", name: "net1", link: "ens3", mode: "l3s", mtu: 9000, inPod: true },
  }]);
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
  const route = { op: "route-replace" as const, route: { dst: "10.5.0.0/24", dev: name } };
  assertEquals(shimSteps(plan), [
    { op: "link-add", link: { kind: "macvlan", name, link: "ens3", mode: "bridge" } },
    {
      op: "addr-add",
      link: name,
      cidr: "192.0.2.4/32",
      opts: { replace: true, noPrefixRoute: true },
    },
    {
      op: "addr-add",
      link: name,
      cidr: "fd00::4/128",
      opts: { replace: true, noPrefixRoute: true, noDad: true },
    },
    { op: "link-set", link: name, change: { up: true } },
    route,
  ]);
  assertEquals(shimSteps({ ...plan, create: false }), [route]);
  assertEquals(shimSteps({ ...plan, kind: "ipvlan", linkMode: "l3s" })[0], {
    op: "link-add",
    link: { kind: "ipvlan", name, link: "ens3", mode: "l3s" },
  });
});

Deno.test("pod subnets and the pod's on-link routes to the node", () => {
  assertEquals(subnetsOf(["10.5.0.7/24", "10.5.0.9/24", "fd00:5::3/64"]), [
    "10.5.0.0/24",
    "fd00:5::/64",
  ]);
  assertEquals(hostCidr("fd00::1"), "fd00::1/128");
  assertEquals(shimPodRoutes(["192.0.2.4", "fd00::4"], [4]), [{ dst: "192.0.2.4/32" }]);
});
