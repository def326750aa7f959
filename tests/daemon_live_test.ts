/**
 * The agent's liveness (`/healthz`): its checks name the route loop, the IPAM socket and
 * (with Kubernetes) the Node watch; an IPAM socket that stops answering the agent's own
 * probe fails `/healthz` with its name (the kubelet would restart the agent), and it
 * passes again once the socket answers.
 */
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";
import { OHNO } from "./support/ohno.ts";
import { tempNetns } from "./support/netns.ts";
import { within } from "./support/wait.ts";
import { ip } from "../netns/ip.ts";
import { runCommand } from "../netns/netns.ts";

Deno.test("liveness: /healthz checks the route loop and the IPAM socket; a silent socket fails it by name", async () => {
  await using host = await tempNetns("live");
  await ip(["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"], {
    netns: host.ns,
  });
  await ip(["addr", "add", "192.0.2.10/24", "dev", "uplink0"], { netns: host.ns });
  await ip(["link", "set", "uplink0", "up"], { netns: host.ns });
  const dir = await Deno.makeTempDir({ prefix: "ohnot-live-" });
  const socket = `${dir}/run/ipam.sock`;
  Deno.writeTextFileSync(
    `${dir}/ohno.json`,
    JSON.stringify({
      nodeName: "live-1",
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
    stdout: "null",
    stderr: "null",
  });
  const get = async (path: string) => {
    const r = await runCommand(host.ns, "curl", {
      args: ["-s", "--max-time", "2", "-w", "\n%{http_code}", `http://127.0.0.1:9753${path}`],
    });
    const i = r.stdout.lastIndexOf("\n");
    return { body: r.stdout.slice(0, i), status: Number(r.stdout.slice(i + 1)) };
  };
  try {
    await within(30_000, "ready", async () => (await get("/readyz")).status === 200);
    const live = await get("/healthz?verbose");
    assertEquals(live.status, 200, live.body);
    assertStringIncludes(live.body, "[+]routes ok");
    assertStringIncludes(live.body, "[+]ipam ok");
    // The socket's path no longer leads to the server: the agent's probe gets no answer.
    Deno.renameSync(socket, `${socket}.away`);
    await within(60_000, "/healthz fails on the ipam check", async () => {
      const r = await get("/healthz");
      return r.status === 503 && r.body.includes("ipam");
    });
    const bad = await get("/healthz?verbose");
    assert(/\[-\]ipam .*has not answered for \d+ s/.test(bad.body), bad.body);
    assertStringIncludes(bad.body, "[+]routes ok");
    Deno.renameSync(`${socket}.away`, socket);
    await within(
      30_000,
      "/healthz passes again",
      async () => (await get("/healthz")).status === 200,
    );
  } finally {
    agent.kill("SIGTERM");
    await agent.status;
    await Deno.remove(dir, { recursive: true });
  }
});
