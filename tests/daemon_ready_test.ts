/**
 * The real agent (`dist/ohno daemon`, local datastore) refuses IPAM until its state is
 * loaded: its start-up is held before the load (OHNO_TEST_HOLD_LOAD), and an ADD arriving
 * then is CNI error 11 "not ready" with nothing allocated; once the load goes on, the same
 * ADD is served.
 */
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import { localAgent } from "./support/agent.ts";
import { within } from "./support/wait.ts";
import { AgentClient, AgentError } from "../ipam/client.ts";
import { LocalStore } from "../ipam/local.ts";
import { ClusterIpam } from "../ipam/cluster.ts";
import { formatIp, nthAddress, parseCidr } from "../ipam/addr.ts";

Deno.test("the agent refuses allocations until pools, node and blocks are loaded, then serves them", async (t) => {
  const holdDir = await Deno.makeTempDir({ prefix: "ohnot-hold-" });
  const hold = `${holdDir}/hold`;
  Deno.writeTextFileSync(hold, "");
  await using a = await localAgent("ready-1", { env: { OHNO_TEST_HOLD_LOAD: hold } });
  const { dir, socket } = a;
  await using node = await cniNode({ network: "ohno" });
  try {
    const pod = await node.pod();
    const conf = node.conf("1.1.0", { ipam: { type: "ohno", daemonSocket: socket } });
    const add = () =>
      node.call({
        command: "ADD",
        containerID: "early",
        netns: pod.path,
        ifname: "eth0",
        config: conf,
      });
    const log = () => Deno.readTextFileSync(`${dir}/daemon.log`);

    await t.step("held before the load: the socket answers not-ready, nothing loaded", async () => {
      await within(30_000, "the agent holding its load (see daemon.log)", () => {
        try {
          return log().includes("holding the state load");
        } catch {
          return false;
        }
      });
      using client = new AgentClient(socket);
      const err = await client.allocate({ network: "ohno", containerID: "raw", ifname: "eth0" })
        .then(() => undefined, (e) => e);
      assert(err instanceof AgentError, `allocate while loading: ${err}`);
      assertEquals([err.kind, err.status], ["not-ready", 503]);
      const before = await node.state();
      const r = await add();
      assertEquals([r.code, r.json?.code], [1, 11], r.stdout);
      assertStringIncludes(String(r.json?.msg), "not ready");
      assertEquals(await node.state(), before, "a refused ADD leaves nothing");
      const st = await node.call({ command: "STATUS", config: conf });
      assertEquals(st.json?.code, 50, st.stdout);
      // Still held: the datastore has no pool, no node, no block, no address.
      await using store = new LocalStore(`${dir}/ipam`);
      assertEquals((await store.list("/")).map((kv) => kv.key), []);
    });

    await t.step(
      "released: the load runs and the same ADD is served from the node's block",
      async () => {
        Deno.removeSync(hold);
        let r = await add();
        await within(30_000, "ADD served after the load", async () => {
          if (r.code !== 0) r = await add();
          return r.code === 0;
        });
        // The first address after the gateway of the block the agent claimed for its node.
        await using store = new LocalStore(`${dir}/ipam`);
        const blocks = await new ClusterIpam(store).nodeBlocks("ready-1");
        assertEquals(blocks.length, 1);
        const block = parseCidr(blocks[0]!.cidr);
        const ips = (r.json?.ips as { address: string }[]).map((i) => i.address);
        assertEquals(ips, [`${formatIp(4, nthAddress(block, 2n))}/24`]);
        const d = await node.call({
          command: "DEL",
          containerID: "early",
          netns: pod.path,
          ifname: "eth0",
          config: conf,
        });
        assertEquals([d.code, d.stdout], [0, ""], d.stdout);
      },
    );
  } finally {
    await Deno.remove(holdDir, { recursive: true });
  }
});
