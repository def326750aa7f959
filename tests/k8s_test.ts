/**
 * The Kubernetes client against the fake API server (its answers shaped like the real one, over
 * loopback): node IP discovery, the NetworkUnavailable patch, Node deletions (also in a
 * watch gap), 410 Gone recovery, bookmarks, pods on a node, auth and TLS.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./support/assert.ts";
import { FakeKube } from "./support/fakekube.ts";
import { runCommand } from "../netns/netns.ts";
import {
  discoverNodeIPs,
  inClusterConnection,
  inform,
  type InformerEvent,
  KubeApiError,
  KubeClient,
  kubeconfigConnection,
  KubeConfigError,
  KubeGoneError,
  type KubeObject,
  KubeUnavailableError,
  listPodsOnNode,
  networkUnavailable,
  type NodeEvent,
  resolveKubeConnection,
  setNetworkAvailable,
  watchNodes,
} from "../daemon/k8s/mod.ts";
import { retryAfterMs } from "../daemon/k8s/client.ts";
import { waitAfter } from "../daemon/k8s/informer.ts";

function clientFor(fake: FakeKube, token?: string): KubeClient {
  return new KubeClient({
    server: fake.url,
    source: "test",
    ...(token ? { token } : {}),
  }, { timeoutMs: 3000 });
}

/** Collects events from an async iterator in the background. */
function collect<T>(it: AsyncIterable<T>) {
  const events: T[] = [];
  let error: unknown;
  const done = (async () => {
    try {
      for await (const e of it) events.push(e);
    } catch (e) {
      error = e;
    }
  })();
  return {
    events,
    done,
    get error() {
      return error;
    },
    async until(what: string, check: (events: T[]) => boolean, ms = 5000) {
      const end = Date.now() + ms;
      while (!check(events)) {
        if (error) throw error;
        if (Date.now() > end) {
          throw new Error(
            `${what}: not within ${ms} ms; events: ${JSON.stringify(events).slice(0, 2000)}`,
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

const describe = (e: NodeEvent) =>
  e.type === "synced"
    ? `synced ${e.nodes.map((n) => n.metadata.name).join(",")}`
    : `${e.type} ${e.name}`;
const lists = (fake: FakeKube, path = "/api/v1/nodes") =>
  fake.requests.filter((r) => r.method === "GET" && r.path === path && r.query.watch === undefined)
    .length;

Deno.test("k8s: node IP discovery returns InternalIPs of both families", async () => {
  await using fake = await FakeKube.start();
  fake.putNode("node1", { internalIPs: ["172.31.0.11", "FD00:172:31:0::11"] });
  fake.putNode("bare");
  using client = clientFor(fake);
  assertEquals(await discoverNodeIPs(client, "node1"), {
    ipv4: ["172.31.0.11"],
    ipv6: ["fd00:172:31::11"],
  });
  const missing = await assertRejects(() => discoverNodeIPs(client, "nope"), KubeApiError);
  assertEquals([missing.status, missing.reason], [404, "NotFound"]);
  await assertRejects(() => discoverNodeIPs(client, "bare"), Error, "no InternalIP");
  await assertRejects(
    () => discoverNodeIPs(client, "Bad/Name"),
    TypeError,
    "not a valid node name",
  );
});

Deno.test("k8s: NetworkUnavailable=False is a strategic merge that keeps the kubelet's conditions", async () => {
  await using fake = await FakeKube.start();
  fake.putNode("node1", {
    internalIPs: ["172.31.0.11"],
    conditions: [
      { type: "Ready", status: "False", reason: "KubeletNotReady" },
      { type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" },
    ],
  });
  using client = clientFor(fake);
  const now = new Date("2026-01-02T03:04:05.678Z");
  const patched = await setNetworkAvailable(client, "node1", { now });
  const cond = networkUnavailable(patched);
  assertEquals(cond, {
    type: "NetworkUnavailable",
    status: "False",
    reason: "OhnoIsUp",
    message: "ohno is running on this node",
    lastTransitionTime: "2026-01-02T03:04:05Z",
    lastHeartbeatTime: "2026-01-02T03:04:05Z",
  });
  const stored = fake.getNode("node1")!;
  const conds = (stored.status as { conditions: { type: string; status: string }[] }).conditions;
  assertEquals(conds.map((c) => `${c.type}=${c.status}`), [
    "Ready=False",
    "NetworkUnavailable=False",
  ]);
  const req = fake.requests.find((r) => r.method === "PATCH")!;
  assertEquals([req.path, req.contentType], [
    "/api/v1/nodes/node1/status",
    "application/strategic-merge-patch+json",
  ]);

  // A JSON merge patch replaces lists whole: the client sends it as such.
  await client.patch("/api/v1/nodes/node1/status", {
    status: { conditions: [{ type: "X", status: "True" }] },
  }, "merge");
  const after = (fake.getNode("node1")!.status as { conditions: { type: string }[] }).conditions;
  assertEquals(after.map((c) => c.type), ["X"]);
  // A stale resourceVersion in the patch is a conflict.
  const conflict = await assertRejects(
    () =>
      client.patch(
        "/api/v1/nodes/node1/status",
        { metadata: { resourceVersion: "1" }, status: {} },
        "merge",
      ),
    KubeApiError,
  );
  assertEquals(conflict.status, 409);
  await assertRejects(() => setNetworkAvailable(client, "ghost"), KubeApiError, "404");
});

Deno.test("k8s: the Node watch reports adds, changes and deletions in order", async () => {
  await using fake = await FakeKube.start();
  fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
  using client = clientFor(fake);
  const stop = new AbortController();
  const w = collect(watchNodes(client, { signal: stop.signal }));
  try {
    await w.until("initial sync", (e) => e.some((x) => x.type === "synced"));
    fake.putNode("node2", { internalIPs: ["172.31.0.12", "fd00:172:31::12"] });
    fake.putNode("node2", { internalIPs: ["172.31.0.22"] });
    fake.deleteNode("node2");
    // Deleted through the API too (DELETE), as kubectl delete node does.
    await client.delete("/api/v1/nodes/node1");
    await w.until("four events", (e) => e.length >= 6);
    assertEquals(w.events.map(describe), [
      "added node1",
      "synced node1",
      "added node2",
      "modified node2",
      "deleted node2",
      "deleted node1",
    ]);
    const added = w.events[2] as Exclude<NodeEvent, { type: "synced" }>;
    assertEquals(added.ips, { ipv4: ["172.31.0.12"], ipv6: ["fd00:172:31::12"] });
    // The watch asked for bookmarks and started at the list's resourceVersion.
    const watchReq = fake.requests.find((r) => r.query.watch === "true")!;
    assertEquals(watchReq.query.allowWatchBookmarks, "true");
    assertEquals(watchReq.query.resourceVersion, "101");
  } finally {
    stop.abort();
    await w.done;
  }
  assertEquals(w.error, undefined);
});

for (const expiredWatch of ["event", "http"] as const) {
  Deno.test(`k8s: 410 Gone (${expiredWatch === "event" ? "ERROR event" : "HTTP status"}) → relist, and a deletion in the gap is still reported`, async () => {
    await using fake = await FakeKube.start({ expiredWatch });
    fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
    fake.putNode("node3", { internalIPs: ["172.31.0.13"] });
    using client = clientFor(fake);
    const stop = new AbortController();
    const errors: unknown[] = [];
    const w = collect(watchNodes(client, { signal: stop.signal, onError: (e) => errors.push(e) }));
    try {
      await w.until("initial sync", (e) => e.some((x) => x.type === "synced"));
      await w.until("watching", () => fake.openWatches === 1);
      // The stream breaks; while the client is away node3 goes and history is compacted.
      fake.closeWatches();
      fake.deleteNode("node3");
      fake.putNode("node4", { internalIPs: ["172.31.0.14"] });
      fake.compact();
      await w.until("resync after 410", (e) => e.filter((x) => x.type === "synced").length === 2);
      assertEquals(w.events.map(describe), [
        "added node1",
        "added node3",
        "synced node1,node3",
        "deleted node3",
        "added node4",
        "synced node1,node4",
      ]);
      assertEquals(lists(fake), 2);
      assert(errors.length === 1 && errors[0] instanceof KubeGoneError, String(errors));
      // And it goes on watching from the new list.
      fake.deleteNode("node1");
      await w.until(
        "deletion after recovery",
        (e) => describe(e[e.length - 1]!) === "deleted node1",
      );
    } finally {
      stop.abort();
      await w.done;
    }
  });
}

Deno.test("k8s: bookmarks move the resourceVersion on, so a broken watch resumes without a relist", async () => {
  await using fake = await FakeKube.start();
  fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
  using client = clientFor(fake);
  const stop = new AbortController();
  // Watch only node1: changes to other nodes move the store on without events for us.
  const w = collect(
    inform<KubeObject>(client, {
      path: "/api/v1/nodes",
      fieldSelector: "metadata.name=node1",
      signal: stop.signal,
    }),
  );
  const kinds = () => w.events.map((e: InformerEvent<KubeObject>) => e.type);
  try {
    await w.until("watching", () => fake.openWatches === 1);
    for (let i = 0; i < 5; i++) fake.putNode(`other${i}`);
    fake.bookmark();
    await w.until("bookmark", (e) => e.some((x) => x.type === "bookmark"));
    const bm = w.events.find((e) => e.type === "bookmark")!;
    assertEquals(bm.resourceVersion, String(fake.resourceVersion));
    fake.compact();
    fake.closeWatches();
    await w.until(
      "re-watch",
      () =>
        fake.requests.filter((r) => r.query.watch === "true").length === 2 &&
        fake.openWatches === 1,
    );
    const rewatch = fake.requests.filter((r) => r.query.watch === "true")[1]!;
    assertEquals(rewatch.query.resourceVersion, bm.resourceVersion);
    assertEquals(lists(fake), 1, "no relist after a bookmark");
    // Without a fresh bookmark, the same break costs a relist.
    fake.putNode("other9");
    fake.compact();
    fake.closeWatches();
    await w.until("relist", () => lists(fake) === 2 && fake.openWatches === 1);
    fake.putNode("node1", { internalIPs: ["172.31.0.99"] });
    await w.until("change seen", (e) => e[e.length - 1]?.type === "modified");
    assertEquals(kinds(), ["added", "synced", "bookmark", "synced", "modified"]);
  } finally {
    stop.abort();
    await w.done;
  }
});

Deno.test("k8s: the pods of one node, with bare container IDs and addresses", async () => {
  await using fake = await FakeKube.start();
  fake.putPod("web-0", {
    namespace: "shop",
    nodeName: "node1",
    containerIDs: ["containerd://abc123"],
    podIPs: ["10.244.1.5", "fd10:244:0:1::5"],
  });
  fake.putPod("agent", {
    namespace: "kube-system",
    nodeName: "node1",
    hostNetwork: true,
    containerIDs: ["cri-o://def"],
  });
  fake.putPod("web-1", {
    namespace: "shop",
    nodeName: "node2",
    containerIDs: ["containerd://zzz"],
  });
  fake.putPod("pending", { nodeName: "node1", phase: "Pending" });
  using client = clientFor(fake);
  const { pods, resourceVersion } = await listPodsOnNode(client, "node1");
  assertEquals(resourceVersion, String(fake.resourceVersion));
  assertEquals(
    pods.map((p) => [p.namespace, p.name, p.phase, p.hostNetwork, p.podIPs, p.containerIDs]).sort(),
    [
      ["default", "pending", "Pending", false, [], []],
      ["kube-system", "agent", "Running", true, [], ["def"]],
      ["shop", "web-0", "Running", false, ["10.244.1.5", "fd10:244:0:1::5"], ["abc123"]],
    ].sort(),
  );
  assert(pods.every((p) => p.uid.length > 0 && p.nodeName === "node1"));
  const req = fake.requests.find((r) => r.path === "/api/v1/pods")!;
  assertEquals(req.query.fieldSelector, "spec.nodeName=node1");
});

Deno.test("k8s: bearer tokens: from a kubeconfig, refused without, re-read from a token file", async () => {
  await using fake = await FakeKube.start({ token: "s3cret" });
  fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
  const dir = await Deno.makeTempDir({ prefix: "ohnot-kube-" });
  try {
    using anon = clientFor(fake);
    const e = await assertRejects(() => discoverNodeIPs(anon, "node1"), KubeApiError);
    assertEquals(e.status, 401);
    await fake.writeKubeconfig(`${dir}/config`);
    using viaConfig = new KubeClient(kubeconfigConnection(`${dir}/config`));
    assertEquals((await discoverNodeIPs(viaConfig, "node1")).ipv4, ["172.31.0.11"]);
    // A token file (as projected service-account tokens are) is re-read as it rotates.
    await Deno.writeTextFile(`${dir}/token`, "old\n");
    using rotating = new KubeClient({ server: fake.url, tokenFile: `${dir}/token`, source: "t" }, {
      tokenRefreshMs: 0,
    });
    await assertRejects(() => discoverNodeIPs(rotating, "node1"), KubeApiError, "401");
    await Deno.writeTextFile(`${dir}/token`, "s3cret\n");
    assertEquals((await discoverNodeIPs(rotating, "node1")).ipv4, ["172.31.0.11"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("k8s: an API server that is not there is KubeUnavailableError, fast", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  using client = new KubeClient({ server: `http://127.0.0.1:${port}`, source: "t" }, {
    timeoutMs: 2000,
  });
  const started = Date.now();
  await assertRejects(
    () => discoverNodeIPs(client, "node1"),
    KubeUnavailableError,
    `127.0.0.1:${port}`,
  );
  assert(Date.now() - started < 5000);
});

async function makeCerts(dir: string): Promise<void> {
  const sh = [
    "set -e",
    `cd ${dir}`,
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=ohno-test-ca",
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1",
    "printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf",
    "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile ext.cnf",
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other.key -out other.crt -days 2 -subj /CN=other-ca",
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout cli.key -out cli.csr -subj /CN=system:node:node1",
    "printf 'extendedKeyUsage=clientAuth\\n' > cext.cnf",
    "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out cli.crt -days 2 -extfile cext.cnf",
  ].join("\n");
  const r = await runCommand(undefined, "sh", { args: ["-c", sh] });
  assertEquals(r.code, 0, r.stderr);
}

Deno.test("k8s: TLS with the cluster CA from a kubeconfig; a wrong CA is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-kube-" });
  try {
    await makeCerts(dir);
    await using fake = await FakeKube.start({
      token: "t",
      tls: {
        cert: await Deno.readTextFile(`${dir}/srv.crt`),
        key: await Deno.readTextFile(`${dir}/srv.key`),
      },
    });
    fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
    await Deno.writeTextFile(
      `${dir}/kubeconfig`,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        "current-context": "c",
        clusters: [{ name: "k", cluster: { server: fake.url, "certificate-authority": "ca.crt" } }],
        users: [{ name: "u", user: { token: "t" } }],
        contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
      }),
    );
    const conn = kubeconfigConnection(`${dir}/kubeconfig`);
    assert(conn.caPem?.includes("BEGIN CERTIFICATE"));
    using good = new KubeClient(conn);
    assertEquals((await discoverNodeIPs(good, "node1")).ipv4, ["172.31.0.11"]);
    using bad = new KubeClient({ ...conn, caPem: await Deno.readTextFile(`${dir}/other.crt`) }, {
      timeoutMs: 3000,
    });
    await assertRejects(() => discoverNodeIPs(bad, "node1"), KubeUnavailableError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("k8s: kubeconfig and in-cluster configuration, and what is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-kube-" });
  try {
    const cfg = (
      user: Record<string, unknown>,
      cluster: Record<string, unknown> = { server: "https://10.0.0.1:6443" },
    ) =>
      `apiVersion: v1
kind: Config
current-context: main
clusters:
- name: k
  cluster: ${JSON.stringify(cluster)}
users:
- name: u
  user: ${JSON.stringify(user)}
contexts:
- name: main
  context: {cluster: k, user: u}
`;
    await Deno.writeTextFile(`${dir}/cert.pem`, "CERT");
    await Deno.writeTextFile(`${dir}/key.pem`, "KEY");
    await Deno.writeTextFile(
      `${dir}/a`,
      cfg({ "client-certificate": "cert.pem", "client-key-data": btoa("KEYDATA") }, {
        server: "https://10.0.0.1:6443/",
        "certificate-authority-data": btoa("CA"),
      }),
    );
    assertEquals(kubeconfigConnection(`${dir}/a`), {
      server: "https://10.0.0.1:6443",
      source: `kubeconfig ${dir}/a`,
      caPem: "CA",
      clientCertPem: "CERT",
      clientKeyPem: "KEYDATA",
    });
    await Deno.writeTextFile(`${dir}/b`, cfg({ exec: { command: "aws" } }));
    assertThrows(() => kubeconfigConnection(`${dir}/b`), KubeConfigError, "uses exec");
    await Deno.writeTextFile(`${dir}/c`, cfg({ "client-certificate": "cert.pem" }));
    assertThrows(() => kubeconfigConnection(`${dir}/c`), KubeConfigError, "without a key");
    await Deno.writeTextFile(
      `${dir}/d`,
      cfg({ "client-certificate": "nope.pem", "client-key": "key.pem" }),
    );
    assertThrows(() => kubeconfigConnection(`${dir}/d`), KubeConfigError, `${dir}/nope.pem`);
    assertThrows(() => kubeconfigConnection(`${dir}/missing`), KubeConfigError, "missing");

    // In-cluster: the service account directory and the service environment variables.
    await Deno.mkdir(`${dir}/sa`);
    await Deno.writeTextFile(`${dir}/sa/token`, "tok");
    await Deno.writeTextFile(`${dir}/sa/ca.crt`, "CA");
    const env = (vars: Record<string, string>) => (k: string) => vars[k];
    assertEquals(
      inClusterConnection({
        dir: `${dir}/sa`,
        env: env({ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" }),
      }),
      {
        server: "https://[fd00::1]:443",
        caPem: "CA",
        tokenFile: `${dir}/sa/token`,
        source: "in-cluster",
      },
    );
    // Off when neither a kubeconfig nor a cluster is there.
    assertEquals(resolveKubeConnection({ env: env({}) }), undefined);
    assertThrows(
      () =>
        resolveKubeConnection({
          env: env({ KUBERNETES_SERVICE_HOST: "10.96.0.1" }),
          serviceAccountDir: `${dir}/none`,
        }),
      KubeConfigError,
      "service account",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("k8s: client-certificate authentication from a kubeconfig reaches a server that demands it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-kube-" });
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  // openssl's test server insists on a client certificate signed by the CA (-Verify 1) and
  // answers any request with a status page: getting an answer at all proves the handshake.
  let server: Deno.ChildProcess | undefined;
  try {
    await makeCerts(dir);
    server = new Deno.Command("openssl", {
      args: [
        "s_server",
        "-accept",
        `127.0.0.1:${port}`,
        "-cert",
        "srv.crt",
        "-key",
        "srv.key",
        "-CAfile",
        "ca.crt",
        "-Verify",
        "1",
        "-www",
      ],
      cwd: dir,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const end = Date.now() + 5000;
    while (true) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch {
        if (Date.now() > end) throw new Error("openssl s_server did not start");
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await Deno.writeTextFile(
      `${dir}/kubeconfig`,
      `apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster:
    server: https://127.0.0.1:${port}
    certificate-authority: ca.crt
users:
- name: node1
  user:
    client-certificate: cli.crt
    client-key: cli.key
contexts:
- name: c
  context: {cluster: k, user: node1}
`,
    );
    const conn = kubeconfigConnection(`${dir}/kubeconfig`);
    using withCert = new KubeClient(conn, { timeoutMs: 3000 });
    const answered = await assertRejects(
      () => withCert.get("/api/v1/nodes/node1"),
      KubeApiError,
      "not JSON",
    );
    assertEquals(answered.status, 200);
    const { clientCertPem: _c, clientKeyPem: _k, ...noCert } = conn;
    using without = new KubeClient(noCert, { timeoutMs: 3000 });
    await assertRejects(() => without.get("/api/v1/nodes/node1"), KubeUnavailableError);
  } finally {
    try {
      server?.kill("SIGKILL");
    } catch {
      // gone
    }
    await server?.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("k8s: 429 Too Many Requests waits the server's Retry-After, then lists again", async () => {
  await using fake = await FakeKube.start();
  fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
  fake.fail({ status: 429, reason: "TooManyRequests", retryAfter: "1", times: 1 });
  using client = clientFor(fake);
  const stop = new AbortController();
  const waits: number[] = [];
  const errors: unknown[] = [];
  const w = collect(watchNodes(client, {
    signal: stop.signal,
    onError: (e, retryInMs) => {
      errors.push(e);
      waits.push(retryInMs);
    },
  }));
  try {
    await w.until("sync after the 429", (e) => e.some((x) => x.type === "synced"));
    assertEquals(waits, [1000], "the wait is the server's Retry-After, not the back-off");
    assert(errors[0] instanceof KubeApiError && errors[0].status === 429, String(errors[0]));
    const listsAt = fake.requests.filter((r) => r.path === "/api/v1/nodes" && !r.query.watch)
      .map((r) => r.at);
    assertEquals(listsAt.length, 2);
    assert(listsAt[1]! - listsAt[0]! >= 950, `listed again after ${listsAt[1]! - listsAt[0]!} ms`);
  } finally {
    stop.abort();
    await w.done;
  }
});

Deno.test("k8s: Retry-After as seconds or an HTTP date; back-off without it has ±25 % jitter", () => {
  const now = Date.parse("2026-12-02T10:00:00Z");
  assertEquals(retryAfterMs("3", now), 3000);
  assertEquals(retryAfterMs("Wed, 02 Dec 2026 10:00:05 GMT", now), 5000);
  assertEquals(retryAfterMs("Wed, 02 Dec 2026 09:00:00 GMT", now), 0, "a date passed: at once");
  assertEquals(retryAfterMs("soon", now), undefined);
  assertEquals(retryAfterMs(null, now), undefined);
  const busy = new KubeApiError("x", 429, "TooManyRequests", { retryAfterMs: 2000 });
  assertEquals(waitAfter(busy, 500, 0.5), 2000);
  const down = new KubeApiError("x", 503, "ServiceUnavailable");
  assertEquals([waitAfter(down, 1000, 0), waitAfter(down, 1000, 1)], [750, 1250]);
  assertEquals(waitAfter(new Error("reset"), 4000, 0.5), 4000);
});

Deno.test("k8s: 403 Forbidden is a KubeApiError that says it is forbidden, and the watch goes on trying", async () => {
  await using fake = await FakeKube.start();
  fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
  fake.fail({
    status: 403,
    reason: "Forbidden",
    message: 'nodes is forbidden: User "system:serviceaccount:kube-system:ohno" cannot list ' +
      'resource "nodes" in API group "" at the cluster scope',
    match: /^GET \/api\/v1\/nodes/,
  });
  using client = clientFor(fake);
  const stop = new AbortController();
  const errors: KubeApiError[] = [];
  const w = collect(watchNodes(client, {
    signal: stop.signal,
    onError: (e) => errors.push(e as KubeApiError),
  }));
  try {
    await w.until("two refusals", () => errors.length >= 2);
    assert(errors.every((e) => e instanceof KubeApiError && e.forbidden && e.status === 403));
    assert(errors[0]!.message.includes("cannot list resource"), errors[0]!.message);
    assertEquals(w.events, [], "nothing synced while forbidden");
    fake.clearFaults();
    await w.until("synced once allowed", (e) => e.some((x) => x.type === "synced"));
  } finally {
    stop.abort();
    await w.done;
  }
});

Deno.test("k8s: a watch that goes silent (half-open) is abandoned after the idle limit and resumed without a relist", async () => {
  await using fake = await FakeKube.start();
  fake.putNode("node1", { internalIPs: ["172.31.0.11"] });
  using client = clientFor(fake);
  const stop = new AbortController();
  const errors: unknown[] = [];
  const w = collect(watchNodes(client, {
    signal: stop.signal,
    watchIdleMs: 400,
    onError: (e) => errors.push(e),
  }));
  const watches = () => fake.requests.filter((r) => r.query.watch === "true").length;
  try {
    await w.until("watching", () => fake.openWatches === 1 && w.events.length === 2);
    fake.silence(true);
    fake.putNode("node2", { internalIPs: ["172.31.0.12"] }); // lost on the dead stream
    await w.until("the silent watch abandoned", () => errors.length >= 1);
    assert(errors[0] instanceof KubeUnavailableError, String(errors[0]));
    assert(/nothing for 400 ms/.test((errors[0] as Error).message), (errors[0] as Error).message);
    assertEquals(w.events.map(describe), ["added node1", "synced node1"]);
    fake.silence(false);
    await w.until(
      "node2 from the resumed watch",
      (e) => e.some((x) => describe(x) === "added node2"),
    );
    assert(watches() >= 2, "a new watch was opened");
    assertEquals(lists(fake), 1, "resumed from the resourceVersion, no relist");
  } finally {
    stop.abort();
    await w.done;
  }
});
