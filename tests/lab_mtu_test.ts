/**
 * MTU across nodes: the agent derives the pods' MTU from the underlay's (host-gw adds no
 * overhead), and the largest packet that MTU allows crosses nodes with don't-fragment
 * set, over IPv4 and IPv6. A pod MTU larger than the underlay's (the classic silent drop
 * of large packets) is shown to fail the same probe.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { dfPing, testLab } from "./support/lab.ts";
import { etcdMissing } from "./support/etcd.ts";
import { ip, ipJson } from "../netns/ip.ts";
import { Netns } from "../netns/netns.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";

const UNDERLAY_MTU = 1400;

Deno.test({
  ignore: !!missing,
  sanitizeResources: false,
  sanitizeOps: false,
  name: `underlay MTU ${UNDERLAY_MTU}: pods get it, and full-size packets cross nodes${skip}`,
  async fn() {
    await using t = await testLab({ nodes: 2, mtu: UNDERLAY_MTU });
    await t.lab.podAdd(t.name, "node1", "big1");
    await t.lab.podAdd(t.name, "node2", "big2");
    const s = t.state();
    using a = Netns.named(s.pods["big1"]!.netns);
    const [v4, v6] = s.pods["big2"]!.ips as [string, string];

    const link = await ipJson<{ mtu: number }[]>(["link", "show", "eth0"], { netns: a });
    assertEquals(link[0]?.mtu, UNDERLAY_MTU, "the pod's MTU is the underlay's");
    // Warm the neighbour caches so one lost first packet cannot decide the result.
    await dfPing(a, v4, 56);
    await dfPing(a, v6, 56);

    // The largest payloads the MTU allows: 20+8 bytes of IPv4+ICMP, 40+8 of IPv6+ICMPv6.
    assert(await dfPing(a, v4, UNDERLAY_MTU - 28), "full-size IPv4 packet across nodes");
    assert(await dfPing(a, v6, UNDERLAY_MTU - 48), "full-size IPv6 packet across nodes");
    // One byte more does not leave the pod (the probe sits exactly at the boundary).
    assertEquals(await dfPing(a, v4, UNDERLAY_MTU - 27), false);
    assertEquals(await dfPing(a, v6, UNDERLAY_MTU - 47), false);

    // What a wrong pod MTU does: 1500 in the pod over a 1400 underlay, and the same kind
    // of full-size packet is lost. This is the failure the derivation above prevents.
    await ip(["link", "set", "eth0", "mtu", "1500"], { netns: a });
    assertEquals(await dfPing(a, v4, 1500 - 28), false, "a 1500-byte packet cannot cross");
  },
});
