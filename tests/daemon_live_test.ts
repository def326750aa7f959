/**
 * The agent's liveness (`/healthz`): its checks name the route loop, the IPAM socket and
 * (with Kubernetes) the Node watch; an IPAM socket that stops answering the agent's own
 * probe fails `/healthz` with its name (the kubelet would restart the agent), and it
 * passes again once the socket answers.
 */
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";
import { localAgent } from "./support/agent.ts";
import { within } from "./support/wait.ts";
import { runCommand } from "../netns/netns.ts";

Deno.test("liveness: /healthz checks the route loop and the IPAM socket; a silent socket fails it by name", async () => {
  await using a = await localAgent("live-1");
  const { host, socket } = a;
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
    // The socket back where the agent's shutdown expects it.
    try {
      Deno.renameSync(`${socket}.away`, socket);
    } catch {
      // it is there
    }
  }
});
