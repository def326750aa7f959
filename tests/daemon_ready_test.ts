/**
 * The real agent (`dist/ohno daemon`, local datastore) refuses IPAM until its state is
 * loaded: its start-up is held before the load (OHNO_TEST_HOLD_LOAD), and an ADD arriving
 * then is CNI error 11 "not ready" with nothing allocated; once the load goes on, the same
 * ADD is served.
 */
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import { OHNO } from "./support/ohno.ts";
import { tempNetns } from "./support/netns.ts";
import { within } from "./support/wait.ts";
import { ip } from "../netns/ip.ts";
import { AgentClient, AgentError } from "../ipam/client.ts";
import { LocalStore } from "../ipam/local.ts";
import { ClusterIpam } from "../ipam/cluster.ts";
import { formatIp, nthAddress, parseCidr } from "../ipam/addr.ts";

Deno.test("the agent refuses allocations until pools, node and blocks are loaded, then serves them", async (t) => {
  await using host = await tempNetns("agent");
  await ip(["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"], {
    netns: host.ns,
  });
  await ip(["addr", "add", "192.0.2.10/24", "dev", "uplink0"], { netns: host.ns });
  await ip(["link", "set", "uplink0", "up"], { netns: host.ns });
  const dir = await Deno.makeTempDir({ prefix: "ohnot-ready-" });
  const hold = `${dir}/hold`;
  const socket = `${dir}/run/ipam.sock`;
  Deno.writeTextFileSync(hold, "");
  Deno.writeTextFileSync(
    `${dir}/ohno.json`,
    JSON.stringify({
      nodeName: "ready-1",
      nodeIP: { source: "addresses", addresses: ["192.0.2.10"] },
      pools: [{ cidr: "10.246.0.0/16" }],
      datastore: { type: "local", dataDir: `${dir}/ipam` },
      kubernetes: { enabled: "off" },
      masquerade: false,
      cniBinDir: `${dir}/cni/bin`,
      allowLauncher: true,
      cniConfDir: `${dir}/cni/net.d`,
      runDir: `${dir}/run`,
      socket,
      stateDir: `${dir}/state`,
      logFile: `${dir}/daemon.log`,
      cniLogFile: `${dir}/cni.log`,
      metricsAddress: "127.0.0.1:9753",
    }),
  );
  const agent = host.ns.spawn(OHNO, {
    args: ["daemon", "--config", `${dir}/ohno.json`],
    env: { OHNO_TEST_HOLD_LOAD: hold },
    stdout: "null",
    stderr: "null",
  });
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
    agent.kill("SIGTERM");
    await agent.status;
    await Deno.remove(dir, { recursive: true });
  }
});
