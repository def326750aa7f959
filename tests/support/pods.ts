/**
 * A stand-in pod for daemon tests: a namespace wired to a node's bridge with a plain
 * veth, addresses and default routes, the way a bridge-mode CNI plugin would. The tests
 * of the routing and masquerade parts use it so that they do not depend on the plugin.
 * @module
 */

import { ip, IpBatch } from "../../netns/ip.ts";
import type { Netns } from "../../netns/netns.ts";
import type { Lab } from "../../lab/topology.ts";
import type { Peer } from "../../daemon/routing/types.ts";
import { type TempNetns, tempNetns } from "./netns.ts";

export interface TestPod extends AsyncDisposable {
  netns: TempNetns;
  ns: Netns;
  ipv4: string;
  ipv6: string;
}

export interface PodWiring {
  /** The node's namespace. */
  node: Netns;
  /** The node's pod block gateway and the pod's address, with prefix length. */
  gw4: string;
  gw6: string;
  pod4: string;
  pod6: string;
  /** Host-side veth name (unique per node). */
  hostIf: string;
  bridge?: string;
}

/**
 * Creates the bridge in the node (if missing, with the gateway addresses) and one pod
 * behind it. Disposing removes the pod's namespace (and with it the veth).
 */
export async function wirePod(w: PodWiring): Promise<TestPod> {
  const bridge = w.bridge ?? "ohno0";
  const netns = await tempNetns("pod");
  try {
    const exists = await ip(["link", "show", bridge], { netns: w.node }).then(
      () => true,
      () => false,
    );
    const b = new IpBatch();
    if (!exists) {
      b.add("link", "add", bridge, "type", "bridge")
        .add("addr", "add", w.gw4, "dev", bridge)
        .add("addr", "add", w.gw6, "dev", bridge, "nodad")
        .add("link", "set", bridge, "up");
    }
    b.add("link", "add", w.hostIf, "type", "veth", "peer", "name", "eth0", "netns", netns.name)
      .add("link", "set", w.hostIf, "master", bridge)
      .add("link", "set", w.hostIf, "up");
    await b.run({ netns: w.node });
    await new IpBatch()
      .add("addr", "add", w.pod4, "dev", "eth0")
      .add("addr", "add", w.pod6, "dev", "eth0", "nodad")
      .add("link", "set", "eth0", "up")
      .add("route", "add", "default", "via", w.gw4.split("/")[0]!)
      .add("route", "add", "default", "via", w.gw6.split("/")[0]!)
      .run({ netns: netns.ns });
  } catch (e) {
    await netns[Symbol.asyncDispose]();
    throw e;
  }
  return {
    netns,
    ns: netns.ns,
    ipv4: w.pod4.split("/")[0]!,
    ipv6: w.pod6.split("/")[0]!,
    [Symbol.asyncDispose]: () => netns[Symbol.asyncDispose](),
  };
}

/**
 * The tests' block plan: node i (from 1) owns 10.244.i.0/24 and fd10:244:0:i::/64. The
 * lab's nodes as host-gw peers under that plan.
 */
export function planPeers(lab: Lab): Peer[] {
  return lab.nodes.map((n, i) => ({
    node: n.name,
    ips: [n.ipv4, n.ipv6],
    blocks: [`10.244.${i + 1}.0/24`, `fd10:244:0:${i + 1}::/64`],
  }));
}

/** A pod on the `i`th node (from 1) in that node's planned blocks (gateway .1, pod .2). */
export function wirePlannedPod(node: Netns, i: number, hostIf: string): Promise<TestPod> {
  return wirePod({
    node,
    gw4: `10.244.${i}.1/24`,
    gw6: `fd10:244:0:${i}::1/64`,
    pod4: `10.244.${i}.2/24`,
    pod6: `fd10:244:0:${i}::2/64`,
    hostIf,
  });
}
