/**
 * The plugin's side of the node-agent socket (`ipam.daemonSocket`), against a small
 * server speaking the protocol of docs/ipam-socket.md: addresses come from the agent,
 * DEL releases there, and an agent that is missing, hangs or refuses maps to the
 * documented CNI codes within the 2 s bound.
 */
import { assert, assertEquals } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import type { AllocateRequest, ErrorKind } from "../ipam/protocol.ts";
import { ERROR_KINDS } from "../ipam/protocol.ts";

interface FakeAgent extends AsyncDisposable {
  socket: string;
  calls: { path: string; body: Record<string, unknown> }[];
  /** Make every IPAM call answer this error kind (undefined: behave). */
  failWith: ErrorKind | undefined;
  hang: boolean;
  /**
   * How `POST /v1/cni` is answered: `elsewhere` (default: an agent that cannot see the
   * pod's namespace, so the plugin does the call and only asks for IPAM), `older` (an
   * agent without the route), or a function giving the answer.
   */
  cni: "elsewhere" | "older" | ((body: Record<string, unknown>) => Response | Promise<Response>);
}

async function fakeAgent(): Promise<FakeAgent> {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-agent-" });
  const socket = `${dir}/ipam.sock`;
  const held = new Map<string, string>();
  // A hanging agent answers only when disposed: never within any bound the plugin has.
  let unhang = () => {};
  const hung = new Promise<void>((r) => unhang = r);
  const agent: FakeAgent = {
    socket,
    calls: [],
    failWith: undefined,
    hang: false,
    cni: "elsewhere",
    async [Symbol.asyncDispose]() {
      unhang();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
  const server = Deno.serve({ path: socket, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const body = req.method === "POST" ? await req.json() : {};
    agent.calls.push({ path, body });
    if (path === "/v1/cni") {
      if (agent.cni === "elsewhere") {
        return Response.json({ error: { kind: "elsewhere", message: "not visible here" } }, {
          status: ERROR_KINDS.elsewhere,
        });
      }
      if (agent.cni === "older") {
        // What an agent without the route answers (daemon/ipamserver.ts).
        return Response.json({ error: { kind: "invalid", message: 'no POST "/v1/cni"' } }, {
          status: 400,
        });
      }
      return await agent.cni(body);
    }
    if (agent.hang) await hung;
    if (agent.failWith) {
      return Response.json({
        error: { kind: agent.failWith, message: `told to fail (${agent.failWith})` },
      }, {
        status: ERROR_KINDS[agent.failWith],
      });
    }
    const key = `${body.containerID}/${body.ifname}`;
    switch (path) {
      case "/v1/allocate": {
        const r = body as unknown as AllocateRequest;
        const ip = `10.244.7.${10 + held.size}`;
        held.set(key, ip);
        return Response.json({
          ips: [{ address: `${ip}/24`, gateway: "10.244.7.1" }],
          routes: [{ dst: "10.96.0.0/12" }],
          echo: r.podName,
        });
      }
      case "/v1/release": {
        const ip = held.get(key);
        held.delete(key);
        return Response.json({ released: ip ? [ip] : [] });
      }
      case "/v1/check":
        return held.has(key)
          ? Response.json({ ips: [{ address: `${held.get(key)}/24` }] })
          : Response.json({ error: { kind: "not-found", message: "nothing held" } }, {
            status: 404,
          });
      case "/v1/status":
        return Response.json({ ready: true, node: "fake" });
      default:
        return Response.json({ error: { kind: "invalid", message: "no such call" } }, {
          status: 400,
        });
    }
  });
  return agent;
}

Deno.test("addresses from the node agent; DEL releases there; CHECK asks it", async () => {
  await using agent = await fakeAgent();
  await using node = await cniNode({ network: "agentnet" });
  const pod = await node.pod();
  const conf = node.conf("1.1.0", { ipam: { type: "ohno", daemonSocket: agent.socket } });
  const r = await node.call({
    command: "ADD",
    containerID: "agent-pod",
    netns: pod.path,
    ifname: "eth0",
    args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=api-1",
    config: conf,
  });
  assertEquals(r.code, 0, r.stdout);
  const ips = r.json?.ips as { address: string; gateway: string }[];
  assertEquals(ips.map((i) => [i.address, i.gateway]), [["10.244.7.10/24", "10.244.7.1"]]);
  const routes = (r.json?.routes as { dst: string }[]).map((x) => x.dst);
  assertEquals(routes, ["0.0.0.0/0", "10.96.0.0/12"]);
  const alloc = agent.calls.find((c) => c.path === "/v1/allocate")!.body;
  assertEquals(
    [
      alloc.network,
      alloc.containerID,
      alloc.ifname,
      alloc.podNamespace,
      alloc.podName,
      alloc.netns,
    ],
    ["agentnet", "agent-pod", "eth0", "prod", "api-1", pod.path],
  );
  const chk = await node.call({
    command: "CHECK",
    containerID: "agent-pod",
    netns: pod.path,
    ifname: "eth0",
    config: { ...conf, prevResult: r.json },
  });
  assertEquals([chk.code, chk.stdout], [0, ""], chk.stdout);
  const st = await node.call({ command: "STATUS", config: conf });
  assertEquals([st.code, st.stdout], [0, ""], st.stdout);
  const d = await node.call({
    command: "DEL",
    containerID: "agent-pod",
    netns: pod.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals([d.code, d.stdout], [0, ""], d.stdout);
  assert(agent.calls.some((c) => c.path === "/v1/release" && c.body.containerID === "agent-pod"));
  // CHECK after DEL: the agent holds nothing, and CHECK says so (the interface is gone too).
  const chk2 = await node.call({
    command: "CHECK",
    containerID: "agent-pod",
    netns: pod.path,
    ifname: "eth0",
    config: { ...conf, prevResult: r.json },
  });
  assertEquals(chk2.json?.code, 103);
});

for (
  const [kind, code] of [["exhausted", 100], ["exists", 101], ["unavailable", 102], [
    "not-ready",
    11,
  ], ["invalid", 7]] as const
) {
  Deno.test(`an agent answering "${kind}" is CNI error ${code}, with nothing left`, async () => {
    await using agent = await fakeAgent();
    await using node = await cniNode({ network: "agentfail" });
    const pod = await node.pod();
    const before = await node.state();
    agent.failWith = kind;
    const r = await node.call({
      command: "ADD",
      containerID: "agent-fail",
      netns: pod.path,
      ifname: "eth0",
      config: node.conf("1.0.0", { ipam: { type: "ohno", daemonSocket: agent.socket } }),
    });
    assertEquals([r.code, r.json?.code], [1, code], r.stdout);
    assertEquals(await node.state(), before);
  });
}

Deno.test("an agent that never answers is error 11 (the plugin's own bound); STATUS says 50", async () => {
  await using agent = await fakeAgent();
  await using node = await cniNode({ network: "agenthang" });
  const pod = await node.pod();
  agent.hang = true;
  const conf = node.conf("1.1.0", { ipam: { type: "ohno", daemonSocket: agent.socket } });
  // The agent never answers while the plugin runs: that the ADD returns at all is the
  // plugin's own bound at work (docs/ipam-socket.md: 2 s).
  const r = await node.call({
    command: "ADD",
    containerID: "hang",
    netns: pod.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals(r.json?.code, 11, r.stdout);
  assert(String(r.json?.msg).includes(agent.socket), String(r.json?.msg));
  const st = await node.call({ command: "STATUS", config: conf });
  assertEquals(st.json?.code, 50);
});

Deno.test("STATUS with no agent at all is error 50 naming the socket", async () => {
  await using node = await cniNode({ network: "noagent" });
  const st = await node.call({
    command: "STATUS",
    config: node.conf("1.1.0", {
      ipam: { type: "ohno", daemonSocket: "/run/ohnot-none/ipam.sock" },
    }),
  });
  assertEquals(st.json?.code, 50);
  assert(String(st.json?.msg).includes("/run/ohnot-none/ipam.sock"));
});

Deno.test("the node's own namespace is error 4 before any address is asked for, for ADD and CHECK", async () => {
  await using agent = await fakeAgent();
  await using node = await cniNode({ network: "agenthost" });
  const before = await node.state();
  const conf = node.conf("1.1.0", { ipam: { type: "ohno", daemonSocket: agent.socket } });
  const r = await node.call({
    command: "ADD",
    containerID: "host-as-pod",
    netns: node.host.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals([r.code, r.json?.code], [1, 4], r.stdout);
  const chk = await node.call({
    command: "CHECK",
    containerID: "host-as-pod",
    netns: "/proc/self/ns/net",
    ifname: "lo",
    config: {
      ...conf,
      prevResult: { cniVersion: "1.1.0", ips: [{ address: "127.0.0.1/8" }] },
    },
  });
  assertEquals([chk.code, chk.json?.code], [1, 4], chk.stdout);
  // The call was offered to the agent (which said it cannot see the namespace); no
  // address was asked for.
  assertEquals(agent.calls.map((c) => c.path).filter((p) => p !== "/v1/cni"), []);
  assertEquals(await node.state(), before);
});

Deno.test("the agent does the whole call: the plugin forwards its CNI environment and config, and prints the answer", async () => {
  await using agent = await fakeAgent();
  await using node = await cniNode({ network: "agentcni" });
  const pod = await node.pod();
  const before = await node.state();
  const conf = node.conf("1.1.0", { ipam: { type: "ohno", daemonSocket: agent.socket } });
  const answer = { cniVersion: "1.1.0", ips: [{ address: "10.244.9.9/24" }], marker: "agent" };
  agent.cni = (b) => Response.json({ exitCode: 0, stdout: { ...answer, echo: b } });
  const r = await node.call({
    command: "ADD",
    containerID: "fwd-1",
    netns: pod.path,
    ifname: "eth0",
    args: "IgnoreUnknown=1;K8S_POD_NAME=web",
    config: conf,
    env: { OHNO_TEST_FAULT: "none", UNRELATED: "x" },
  });
  assertEquals(r.code, 0, r.stdout);
  assertEquals(r.json?.marker, "agent", "the agent's answer, printed as it came");
  const sent = (r.json?.echo ?? {}) as { env: Record<string, string>; config: string };
  assertEquals(sent.env, {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "fwd-1",
    CNI_NETNS: pod.path,
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=web",
    CNI_PATH: sent.env.CNI_PATH!,
    OHNO_TEST_FAULT: "none",
  });
  assertEquals(JSON.parse(sent.config).name, "agentcni");
  assertEquals(agent.calls.map((c) => c.path), ["/v1/cni"], "one request, nothing else");
  assertEquals(await node.state(), before, "the plugin itself touched nothing");
  // A CNI error is an answer too: exit 1 and the agent's error document.
  agent.cni = () =>
    Response.json({ exitCode: 1, stdout: { cniVersion: "1.1.0", code: 100, msg: "full" } });
  const e = await node.call({
    command: "ADD",
    containerID: "fwd-2",
    netns: pod.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals([e.code, e.json?.code, e.json?.msg], [1, 100, "full"]);
  // DEL answered with nothing to print prints nothing.
  agent.cni = () => Response.json({ exitCode: 0 });
  const d = await node.call({
    command: "DEL",
    containerID: "fwd-1",
    netns: pod.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals([d.code, d.stdout], [0, ""]);
});

Deno.test("an agent without the cni route: the plugin does the call itself, asking the agent for IPAM", async () => {
  await using agent = await fakeAgent();
  await using node = await cniNode({ network: "agentold" });
  const pod = await node.pod();
  agent.cni = "older";
  const conf = node.conf("1.1.0", { ipam: { type: "ohno", daemonSocket: agent.socket } });
  const r = await node.call({
    command: "ADD",
    containerID: "old-1",
    netns: pod.path,
    ifname: "eth0",
    config: conf,
  });
  assertEquals(r.code, 0, r.stdout);
  assertEquals((r.json?.ips as { address: string }[])[0]!.address, "10.244.7.10/24");
  assertEquals(agent.calls.map((c) => c.path), ["/v1/cni", "/v1/allocate"]);
});

Deno.test("with no agent listening, a bad config is still its own error (7), a good one 11", async () => {
  await using node = await cniNode({ network: "agentgone" });
  const pod = await node.pod();
  const before = await node.state();
  const ipam = { type: "ohno", daemonSocket: "/run/ohnot-none/ipam.sock" };
  const bad = await node.call({
    command: "ADD",
    containerID: "gone-1",
    netns: pod.path,
    ifname: "eth0",
    config: node.conf("1.1.0", { ipam, mtu: "lots" }),
  });
  assertEquals([bad.code, bad.json?.code], [1, 7], bad.stdout);
  assert(String(bad.json?.msg).includes("mtu"), String(bad.json?.msg));
  const good = await node.call({
    command: "ADD",
    containerID: "gone-1",
    netns: pod.path,
    ifname: "eth0",
    config: node.conf("1.1.0", { ipam }),
  });
  assertEquals([good.code, good.json?.code], [1, 11], good.stdout);
  assert(String(good.json?.msg).includes("/run/ohnot-none/ipam.sock"), String(good.json?.msg));
  assertEquals(await node.state(), before);
});
