/**
 * Fixed pod addresses (issue 15): a pod that asks for an address through its
 * `ohno.io/ip-addrs` annotation gets it from cluster IPAM, in a lab whose agents read
 * pods from the fake API server; a conflicting or malformed request is a clear error
 * and holds nothing.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { kubeLab } from "./support/kubelab.ts";
import { etcdMissing } from "./support/etcd.ts";
import { within } from "./support/lab.ts";
import * as labs from "../lab/lab.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";

Deno.test({
  name:
    `fixed addresses: the ohno.io/ip-addrs annotation gets its address; a conflict is 102${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const name = `f${Deno.pid % 100000}`;
    await using k8s = await kubeLab({ name, nodes: 2 });
    const fake = k8s.fake;
    {
      const fixed = "10.244.200.7";
      const ask = (pod: string, node: string, value: string) =>
        fake.putPod(pod, {
          namespace: "lab",
          nodeName: node,
          annotations: { "ohno.io/ip-addrs": value },
        });
      ask("fixed", "node1", JSON.stringify([fixed]));
      const p = await labs.podAdd(name, "node1", "fixed");
      assert(p.ips.includes(fixed), `fixed pod got ${p.ips.join(", ")}`);
      const shown = await labs.ipam(name, ["show", fixed, "-o", "json"]);
      assertMatch(shown.stdout, /"podName":\s*"fixed"/, shown.stdout + shown.stderr);

      // Another node's pod reaches it (its block's route reaches node2 by the agents' watch).
      fake.putPod("peer", { namespace: "lab", nodeName: "node2" });
      await labs.podAdd(name, "node2", "peer");
      await within(10_000, "peer pings the fixed pod", async () => {
        const r = await labs.ping(name, "peer", "fixed");
        return r.some((x) => x.ip === fixed && x.ok);
      });

      // The same address for another pod on the same node: 102 naming the annotation.
      const before = (await labs.ipam(name, ["ls", "-o", "json"])).stdout;
      const fails = async (pod: string, node: string, ...want: RegExp[]) => {
        const e = await labs.podAdd(name, node, pod).then(() => undefined, (e) => e);
        assert(e instanceof Error, `${pod}: the request must fail`);
        assertMatch(e.message, /\[102\]/);
        for (const re of want) assertMatch(e.message, re);
      };
      ask("copycat", "node1", fixed);
      await fails(
        "copycat",
        "node1",
        /lab\/copycat annotation ohno\.io\/ip-addrs: .*10\.244\.200\.7/,
      );
      // On another node: the address is in node1's block, which node2 cannot hand out.
      ask("elsewhere", "node2", fixed);
      await fails(
        "elsewhere",
        "node2",
        /ohno\.io\/ip-addrs: .*block 10\.244\.200\.0\/24 of node node1/,
      );
      // A malformed annotation: 102 naming it.
      ask("garbled", "node2", "[10.244.200.8");
      await fails(
        "garbled",
        "node2",
        /lab\/garbled annotation ohno\.io\/ip-addrs: .* is not a JSON list/,
      );
      assertEquals((await labs.ipam(name, ["ls", "-o", "json"])).stdout, before, "nothing held");

      // Released on DEL: the address is free for the next pod that asks.
      await labs.podDel(name, "fixed");
      const again = await labs.podAdd(name, "node1", "copycat");
      assert(again.ips.includes(fixed), `copycat got ${again.ips.join(", ")}`);
      assertEquals((await labs.ipam(name, ["check"])).code, 0);
    }
  },
});
