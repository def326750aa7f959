/** The agent's probe and metrics endpoints on a real loopback socket. */
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./support/assert.ts";
import { Health, parseListenAddress, serveHealth } from "../daemon/health.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";

Deno.test("health: /readyz only after the agent says so; /healthz follows its checks; /metrics scrapes", async () => {
  const health = new Health();
  const metrics = new DaemonMetrics();
  await using server = await serveHealth({
    address: "127.0.0.1:0",
    health,
    registry: metrics.registry,
  });
  assert(server.port > 0);
  const get = async (path: string, method = "GET") => {
    const r = await fetch(`${server.url}${path}`, { method });
    return { status: r.status, type: r.headers.get("content-type"), body: await r.text() };
  };

  assertEquals(await get("/healthz"), {
    status: 200,
    type: "text/plain; charset=utf-8",
    body: "ok\n",
  });
  assertEquals((await get("/readyz")).status, 503);
  assertEquals((await get("/readyz")).body, "not ready: starting\n");
  health.setReady(false, "etcd unreachable");
  assertEquals(
    (await get("/readyz?verbose")).body,
    "[-]agent not ready: etcd unreachable\nreadyz check failed\n",
  );
  health.setReady(true);
  metrics.ready.set(1);
  assertEquals(await get("/readyz"), {
    status: 200,
    type: "text/plain; charset=utf-8",
    body: "ok\n",
  });

  let stuck = false;
  health.addCheck("routes", () => (stuck ? "no reconcile for 95 s" : undefined));
  health.addCheck("boom", () => {
    throw new Error("broken check");
  });
  const bad = await get("/healthz");
  assertEquals([bad.status, bad.body], [503, "boom: check failed: broken check\n"]);
  health.removeCheck("boom");
  assertEquals((await get("/healthz?verbose")).body, "[+]routes ok\nhealthz check passed\n");
  stuck = true;
  assertEquals(await get("/healthz"), {
    status: 503,
    type: "text/plain; charset=utf-8",
    body: "routes: no reconcile for 95 s\n",
  });

  metrics.allocations.inc(undefined, 2);
  const m = await get("/metrics");
  assertEquals([m.status, m.type], [200, "text/plain; version=0.0.4; charset=utf-8"]);
  assertStringIncludes(m.body, "\nohno_ipam_allocations_total 2\n");
  assertStringIncludes(m.body, "\nohno_ready 1\n");

  assertEquals((await get("/nope")).status, 404);
  assertEquals((await get("/metrics", "POST")).status, 405);
  const head = await get("/readyz", "HEAD");
  assertEquals([head.status, head.body], [200, ""]);
});

Deno.test("health: listen addresses are parsed or refused with the text", async () => {
  assertEquals(parseListenAddress("127.0.0.1:9753"), { hostname: "127.0.0.1", port: 9753 });
  assertEquals(parseListenAddress("[::1]:9753"), { hostname: "::1", port: 9753 });
  assertEquals(parseListenAddress(":9753"), { hostname: "0.0.0.0", port: 9753 });
  for (const bad of ["9753", "host:99999", "[::1]", "a:b:1"]) {
    assertThrows(() => parseListenAddress(bad), RangeError, JSON.stringify(bad));
  }
  // A port that is taken is an error naming the address, not a hang.
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const addr = `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`;
    await assertRejects(
      () =>
        serveHealth({
          address: addr,
          health: new Health(),
          registry: new DaemonMetrics().registry,
        }),
      Error,
      addr,
    );
  } finally {
    taken.close();
  }
});

Deno.test("health: /status is JSON with readiness and what the agent adds (routing problems)", async () => {
  const health = new Health();
  await using server = await serveHealth({
    address: "127.0.0.1:0",
    health,
    registry: new DaemonMetrics().registry,
  });
  const get = async () => {
    const r = await fetch(`${server.url}/status`);
    assertEquals(r.headers.get("content-type"), "application/json");
    return { status: r.status, body: await r.json() };
  };
  assertEquals(await get(), { status: 200, body: { ready: false, reason: "starting" } });
  const mismatch = { node: "n2", vni: 7, port: 8472, localVni: 1, localPort: 8472 };
  health.setStatus(() => ({ node: "n1", routing: { vxlanMismatches: [mismatch] } }));
  health.setReady(true);
  assertEquals(await get(), {
    status: 200,
    body: { ready: true, node: "n1", routing: { vxlanMismatches: [mismatch] } },
  });
});
