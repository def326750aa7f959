/** Finding the node's own address in a lab node namespace, every way the config allows. */
import { assertEquals, assertRejects } from "./support/assert.ts";
import { TEST_NETNS_PREFIX } from "./support/netns.ts";
import { ip } from "../netns/ip.ts";
import { labUp } from "../lab/topology.ts";
import { NodeIPError, resolveNodeIPs } from "../daemon/nodeip.ts";

const PREFIX = `${TEST_NETNS_PREFIX}${Deno.pid}-ni-`;

Deno.test("node IP: from the default route, a named interface, given addresses, Kubernetes, or auto", async () => {
  await using lab = await labUp({ name: "nodeip", nodes: 1, prefix: PREFIX });
  const netns = lab.nodes[0]!.ns;
  await ip(["link", "set", "eth0", "mtu", "1400"], { netns });
  const both = { ipv4: "172.31.0.11", ipv6: "fd00:172:31::11", interface: "eth0", mtu: 1400 };

  assertEquals(await resolveNodeIPs({ source: "default-route", addresses: [] }, { netns }), {
    ...both,
    source: "default-route",
  });
  assertEquals(
    await resolveNodeIPs({ source: "interface", addresses: [], interface: "eth0" }, { netns }),
    { ...both, source: "interface eth0" },
  );
  assertEquals(
    await resolveNodeIPs({ source: "addresses", addresses: ["172.31.0.11"] }, { netns }),
    {
      ipv4: "172.31.0.11",
      interface: "eth0",
      mtu: 1400,
      source: "addresses",
    },
  );
  // An address that is not on this host is taken as given (no interface to report).
  assertEquals(
    await resolveNodeIPs({ source: "addresses", addresses: ["10.9.9.9", "fd99::9"] }, { netns }),
    {
      ipv4: "10.9.9.9",
      ipv6: "fd99::9",
      source: "addresses",
    },
  );
  const kubernetes = () =>
    Promise.resolve({ ipv4: [], ipv6: ["fd00:172:31::11", "fd00:172:31::99"] });
  assertEquals(
    await resolveNodeIPs({ source: "kubernetes", addresses: [] }, { netns, kubernetes }),
    {
      ipv6: "fd00:172:31::11",
      interface: "eth0",
      mtu: 1400,
      source: "kubernetes",
    },
  );
  // auto: addresses first, then Kubernetes when it is on, then the default route.
  assertEquals(
    (await resolveNodeIPs({ source: "auto", addresses: ["172.31.0.11"] }, { netns, kubernetes }))
      .source,
    "addresses",
  );
  assertEquals(
    (await resolveNodeIPs({ source: "auto", addresses: [] }, { netns, kubernetes })).source,
    "kubernetes",
  );
  assertEquals(
    (await resolveNodeIPs({ source: "auto", addresses: [] }, { netns })).source,
    "default-route",
  );

  // Without an IPv6 default route, IPv6 comes from the IPv4 default route's interface.
  await ip(["-6", "route", "del", "default"], { netns });
  assertEquals(await resolveNodeIPs({ source: "default-route", addresses: [] }, { netns }), {
    ...both,
    source: "default-route",
  });
});

Deno.test("node IP: what cannot be found is a clear error", async () => {
  await using lab = await labUp({ name: "nodeipx", nodes: 1, prefix: PREFIX });
  const netns = lab.nodes[0]!.ns;
  await assertRejects(
    () => resolveNodeIPs({ source: "interface", addresses: [], interface: "eth9" }, { netns }),
    NodeIPError,
    "interface eth9 does not exist",
  );
  await assertRejects(
    () => resolveNodeIPs({ source: "interface", addresses: [], interface: "lo" }, { netns }),
    NodeIPError,
    "interface lo has no global address",
  );
  await assertRejects(
    () => resolveNodeIPs({ source: "kubernetes", addresses: [] }, { netns }),
    NodeIPError,
    "Kubernetes integration is off",
  );
  // The outside host has no default route at all.
  await assertRejects(
    () => resolveNodeIPs({ source: "default-route", addresses: [] }, { netns: lab.outside.ns }),
    NodeIPError,
    "there is no default route",
  );
});
