import { assertEquals } from "../tests/support/assert.ts";
import { hostSteps } from "./bridge.ts";
import { podRoutes } from "./driver.ts";
import { podSteps } from "./links.ts";

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
  assertEquals(hostSteps(plan), [
    { op: "link-set", link: "ohno0", change: { up: true } },
    { op: "addr-add", link: "ohno0", cidr: "10.1.0.1/24", opts: { replace: true } },
    { op: "addr-add", link: "ohno0", cidr: "fd00::1/64", opts: { replace: true, noDad: true } },
    {
      op: "link-add",
      link: {
        kind: "veth",
        name: "veth0123456789a",
        mtu: 1450,
        master: "ohno0",
        up: true,
        peer: { name: "eth0", mtu: 1450, inPod: true },
      },
    },
    { op: "link-set", link: "veth0123456789a", change: { hairpin: true } },
  ]);
  const created = hostSteps({ ...plan, createBridge: true, podMac: "02:00:00:00:00:05" });
  assertEquals(created[0], {
    op: "link-add",
    link: { kind: "bridge", name: "ohno0", mac: "02:00:00:00:00:01", mtu: 1450 },
  });
  assertEquals(created.at(-2), {
    op: "link-add",
    link: {
      kind: "veth",
      name: "veth0123456789a",
      mtu: 1450,
      master: "ohno0",
      up: true,
      peer: { name: "eth0", mtu: 1450, mac: "02:00:00:00:00:05", inPod: true },
    },
  });
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
  const c = podSteps({
    ifname: "eth0",
    addresses: [{ family: 6, cidr: "fd00::2/64" }],
    routes: [{ dst: "::/0", gw: "fd00::1" }, { dst: "192.0.2.1/32" }],
  });
  assertEquals(c, [
    { op: "link-set", link: "lo", change: { up: true } },
    { op: "addr-add", link: "eth0", cidr: "fd00::2/64", opts: { noDad: true } },
    { op: "link-set", link: "eth0", change: { up: true } },
    { op: "route-replace", route: { dst: "::/0", via: "fd00::1", dev: "eth0" } },
    { op: "route-replace", route: { dst: "192.0.2.1/32", dev: "eth0" } },
  ]);
});
