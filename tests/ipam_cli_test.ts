/**
 * `ohno ipam` as people and scripts use it: dist/ohno against a real etcd (plain and
 * TLS) and against a local store directory; tables, JSON, errors on stderr with a
 * non-zero exit.
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { etcdMissing, silentEndpoint, startEtcd } from "./support/etcd.ts";
import { OHNO } from "./support/ohno.ts";
import { cniNode } from "./support/cni.ts";
import { runCommand } from "../netns/netns.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";

function cli(base: string[], env: Record<string, string> = {}) {
  return async (...args: string[]) => {
    const r = await runCommand(undefined, OHNO, {
      args: ["ipam", ...base, ...args],
      env,
    });
    return r;
  };
}

async function exercise(ipam: ReturnType<typeof cli>) {
  const ok = async (...args: string[]) => {
    const r = await ipam(...args);
    assertEquals(r.code, 0, `ohno ipam ${args.join(" ")}: ${r.stderr}`);
    assertEquals(r.stderr, "");
    return r.stdout;
  };
  const fails = async (pattern: RegExp, ...args: string[]) => {
    const r = await ipam(...args);
    assert(r.code !== 0, `ohno ipam ${args.join(" ")} should fail`);
    assertMatch(r.stderr, pattern);
    assertEquals(r.stdout, "");
  };

  assertMatch(await ok("pool", "add", "10.244.0.0/16"), /pool 10\.244\.0\.0\/16 with \/24 blocks/);
  await ok("pool", "add", "fd00:244::/48");
  await fails(/overlaps/, "pool", "add", "10.244.8.0/24");
  await fails(/not a CIDR/, "pool", "add", "10.300.0.0/16");
  const pools = JSON.parse(await ok("pools", "-o", "json"));
  assertEquals(pools.map((p: { cidr: string }) => p.cidr).sort(), [
    "10.244.0.0/16",
    "fd00:244::/48",
  ]);

  const vm = JSON.parse(
    await ok("allocate", "--node", "node-a", "--create-node", "--handle", "vm-42", "-o", "json"),
  );
  assertEquals(vm.length, 2);
  const v4 = vm[0].ip as string;
  await ok("allocate", "--node", "node-b", "--create-node", "--handle", "vm-43");
  await fails(/already has addresses/, "allocate", "--node", "node-a", "--handle", "vm-42");

  const table = await ok("ls");
  assertMatch(table.split("\n")[0]!, /^IP\s+NODE\s+POD\s+CONTAINER\s+IFNAME\s+AGE$/);
  assertEquals(table.trim().split("\n").length, 5);
  assertMatch(await ok("ls", "-o", "wide"), /POOL\s+BLOCK/);
  const mine = JSON.parse(await ok("ls", "--node", "node-a", "-o", "json"));
  assertEquals(mine.map((r: { containerID: string }) => r.containerID), ["vm-42", "vm-42"]);
  assertEquals(JSON.parse(await ok("ls", "--pool", "fd00:244::/48", "-o", "json")).length, 2);
  assertMatch(await ok("blocks"), /BLOCK\s+NODE\s+POOL\s+USED\s+FREE\s+USE%/);
  assertMatch(await ok("show", v4), new RegExp(`container\\s+vm-42`));
  assertEquals(JSON.parse(await ok("show", "vm-43", "-o", "json")).length, 2);
  await fails(/nothing allocated/, "show", "10.244.99.99");

  const reserved = v4.replace(/\.\d+$/, ".200");
  await ok("reserve", reserved, "--note", "printer");
  await fails(/not reserved/, "unreserve", "10.244.77.77");
  await ok("unreserve", reserved);

  const valid = await Deno.makeTempFile({ prefix: "ohnot-valid-" });
  await Deno.writeTextFile(valid, JSON.stringify([{ containerID: "vm-42", ifname: "eth0" }]));
  assertMatch(await ok("gc", "--valid", valid, "--dry-run"), /would release .*vm-43/);
  assertEquals(JSON.parse(await ok("ls", "-o", "json")).length, 4, "a dry run releases nothing");
  assertMatch(await ok("gc", "--valid", valid), /released .*vm-43/);
  await Deno.remove(valid);

  assertMatch(await ok("check"), /consistent/);
  assertEquals(JSON.parse(await ok("check", "-o", "json")).ok, true);
  await fails(/still has 1 allocated address/, "pool", "rm", "10.244.0.0/16");
  assertMatch(await ok("release", v4), /released/);
  await fails(/exactly one of/, "release");
  await fails(/is not allocated/, "release", v4);
  await ok("allocate", "--node", "node-c", "--create-node", "--handle", "vm-44");
  assertMatch(await ok("release", "--node", "node-c"), /node node-c: released 1 attachments/);
  await ok("pool", "rm", "10.244.0.0/16");
  assertEquals(JSON.parse(await ok("ls", "-o", "json")).length, 0);
}

Deno.test({
  name: `ohno ipam against a local store directory`,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ohnot-ipamcli-" });
    try {
      await exercise(cli(["--data-dir", dir]));
      // The same through the environment.
      // The same through the environment: it sees what the run above left (the IPv6 pool),
      // and what it writes the flag form reads back.
      const viaEnv = cli([], { OHNO_DATASTORE: "local", OHNO_DATA_DIR: dir });
      const cidrs = async (ipam: ReturnType<typeof cli>) => {
        const r = await ipam("pools", "-o", "json");
        assertEquals(r.code, 0, r.stderr);
        return (JSON.parse(r.stdout) as { cidr: string }[]).map((p) => p.cidr).sort();
      };
      assertEquals(await cidrs(viaEnv), ["fd00:244::/48"]);
      assertEquals((await viaEnv("pool", "add", "10.251.0.0/16")).code, 0);
      assertEquals(await cidrs(cli(["--data-dir", dir])), ["10.251.0.0/16", "fd00:244::/48"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: `ohno ipam against etcd${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  async fn() {
    await using etcd = await startEtcd();
    await exercise(cli(["--etcd-endpoints", etcd.endpoints.join(",")]));
  },
});

Deno.test({
  name: `ohno ipam over TLS: reads the agent's config file; a wrong CA is refused clearly${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  async fn() {
    await using etcd = await startEtcd({ tls: true });
    const t = etcd.tls!;
    const config = `${t.dir}/ohno.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        datastore: {
          type: "etcd",
          etcd: { endpoints: etcd.endpoints, ca: t.ca, cert: t.clientCert, key: t.clientKey },
        },
      }),
    );
    const good = await runCommand(undefined, OHNO, {
      args: ["ipam", "--config", config, "pool", "add", "10.60.0.0/16"],
    });
    assertEquals(good.code, 0, good.stderr);
    const bad = await runCommand(undefined, OHNO, {
      args: ["ipam", "--config", config, "--etcd-ca", t.otherCa, "pools"],
    });
    assert(bad.code !== 0);
    assertMatch(bad.stderr, /etcd at https:\/\/127\.0\.0\.1:\d+ is unavailable/);
    const noEndpoints = await runCommand(undefined, OHNO, {
      args: ["ipam", "--datastore", "etcd", "ls"],
    });
    assert(noEndpoints.code !== 0);
    assertMatch(
      noEndpoints.stderr,
      /datastore.etcd.endpoints .* must be set when datastore.type is etcd/,
    );
    const missingConfig = await runCommand(undefined, OHNO, {
      args: ["ipam", "--config", "/nonexistent/ohno.json", "ls"],
    });
    assert(missingConfig.code !== 0);
    assertMatch(missingConfig.stderr, /cannot read \/nonexistent\/ohno\.json/);
  },
});

Deno.test("ohno ipam allocate refuses a node with no record unless --create-node", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-ipamcli-" });
  try {
    const ipam = cli(["--data-dir", dir]);
    const ok = async (...args: string[]) => {
      const r = await ipam(...args);
      assertEquals(r.code, 0, `ohno ipam ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    await ok("pool", "add", "10.245.0.0/16");
    const r = await ipam("allocate", "--node", "no-such-node", "--handle", "vm-1");
    assert(r.code !== 0, "allocate for a node with no record must fail");
    assertEquals(r.stdout, "");
    assertMatch(r.stderr, /node no-such-node has no record .*nothing allocated/);
    assertMatch(r.stderr, /--create-node/);
    assertEquals(JSON.parse(await ok("blocks", "-o", "json")), [], "no block was claimed");
    assertEquals(JSON.parse(await ok("ls", "-o", "json")), [], "no address was allocated");
    assertEquals(JSON.parse(await ok("nodes", "-o", "json")), []);

    // --create-node writes the record (no addresses) and allocates.
    const got = JSON.parse(
      await ok(
        "allocate",
        "--node",
        "no-such-node",
        "--create-node",
        "--handle",
        "vm-1",
        "-o",
        "json",
      ),
    );
    assertEquals(got.length, 1);
    const nodes = JSON.parse(await ok("nodes", "-o", "json"));
    assertEquals(nodes.map((n: { node: string; ips: string[] }) => [n.node, n.ips]), [
      ["no-such-node", []],
    ]);
    // Now it has a record: no flag needed.
    await ok("allocate", "--node", "no-such-node", "--handle", "vm-2");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: `ohno ipam against a port that accepts and never answers: the 3 s dial timeout, named`,
  async fn() {
    await using silent = silentEndpoint();
    const r = await runCommand(undefined, OHNO, {
      args: ["ipam", "--etcd-endpoints", silent.endpoint, "pools"],
    });
    assert(r.code !== 0);
    assertEquals(
      r.stderr.trim(),
      `ohno: etcd at ${silent.endpoint} is unavailable (list): it did not answer within 3 s ` +
        `(dial timeout: no connection that etcd answers)`,
    );
    assertEquals(r.stdout, "");
  },
});

Deno.test({
  name:
    `ohno ipam over TLS says what is wrong: the CA, the server name, the client certificate${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  async fn() {
    // etcd's certificate names IP:127.0.0.1 and DNS:localhost; the second one only the IP.
    await using etcd = await startEtcd({ tls: true });
    await using ipOnly = await startEtcd({ tls: true, serverSans: "IP:127.0.0.1" });
    const t = etcd.tls!;
    const ipam = async (
      endpoint: string,
      etcdConfig: { ca?: string; cert?: string; key?: string; serverName?: string },
    ) => {
      const config = `${t.dir}/ohno-${crypto.randomUUID()}.json`;
      await Deno.writeTextFile(
        config,
        JSON.stringify({
          datastore: { type: "etcd", etcd: { endpoints: [endpoint], ...etcdConfig } },
        }),
      );
      return await runCommand(undefined, OHNO, { args: ["ipam", "--config", config, "pools"] });
    };
    const works = (r: { code: number; stderr: string; stdout: string }) => {
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout.trim(), "no pools");
    };
    const fails = (r: { code: number; stderr: string }, endpoint: string, why: string) => {
      assert(r.code !== 0, `should fail with: ${why}`);
      assertEquals(r.stderr.trim(), `ohno: etcd at ${endpoint} is unavailable (list): TLS: ${why}`);
    };
    const [url] = etcd.endpoints as [string];
    const client = { cert: t.clientCert, key: t.clientKey };

    works(await ipam(url, { ca: t.ca, ...client }));
    fails(
      await ipam(url, { ca: t.otherCa, ...client }),
      url,
      `etcd's certificate is not signed by the CA in ${t.otherCa} (invalid peer certificate: UnknownIssuer)`,
    );
    fails(
      await ipam(url, { ca: t.ca }),
      url,
      "etcd closed the connection during the handshake: it demands a client certificate " +
        "(give --etcd-cert and --etcd-key)",
    );
    fails(
      await ipam(url, { ca: t.ca, ...client, serverName: "etcd.example" }),
      url,
      "etcd's certificate names IP:127.0.0.1, DNS:localhost, not etcd.example " +
        "(use an endpoint it names, or set datastore.etcd.serverName)",
    );
    // An IP address is checked against the certificate's IP addresses, never sent as the
    // TLS server name (Deno refuses one: "servername must not be an IP address").
    works(await ipam(url, { ca: t.ca, ...client, serverName: "127.0.0.1" }));
    fails(
      await ipam(url, client),
      url,
      "etcd's certificate is not signed by a CA this host trusts (give etcd's CA with --etcd-ca) " +
        "(invalid peer certificate: UnknownIssuer)",
    );
    const [ipUrl] = ipOnly.endpoints as [string];
    const ipTls = ipOnly.tls!;
    const ipClient = { ca: ipTls.ca, cert: ipTls.clientCert, key: ipTls.clientKey };
    works(await ipam(ipUrl, ipClient));
    fails(
      await ipam(ipUrl.replace("127.0.0.1", "localhost"), ipClient),
      ipUrl.replace("127.0.0.1", "localhost"),
      "etcd's certificate names IP:127.0.0.1, not localhost " +
        "(use an endpoint it names, or set datastore.etcd.serverName)",
    );
  },
});

Deno.test("ohno ipam ls and show read what the plugin's embedded IPAM allocated", async () => {
  await using node = await cniNode({ network: "lsnet" });
  const pod = await node.pod();
  const r = await node.add(pod, "embedded-ls-1");
  assertEquals(r.code, 0, r.stdout);
  const ipam = cli(["--data-dir", node.dataDir]);
  const ls = await ipam("ls", "-o", "json");
  assertEquals(ls.code, 0, ls.stderr);
  const rows = JSON.parse(ls.stdout) as Record<string, string>[];
  assertEquals(rows.map((x) => [x.containerID, x.ifname, x.node, x.pool]), [
    ["embedded-ls-1", "eth0", "(this host)", "network lsnet"],
    ["embedded-ls-1", "eth0", "(this host)", "network lsnet"],
  ]);
  assertEquals(rows.map((x) => x.ip).sort(), ["10.88.0.2", "fd00:88::2"]);
  const show = await ipam("show", "10.88.0.2", "-o", "json");
  assertEquals(show.code, 0, show.stderr);
  assertMatch(show.stdout, /embedded-ls-1/);
});

Deno.test("ohno ipam check --datastore local checks the plugin's embedded allocations", async () => {
  await using node = await cniNode({ network: "checknet" });
  const pod = await node.pod();
  assertEquals((await node.add(pod, "embedded-check-1")).code, 0);
  const ipam = cli(["--datastore", "local", "--data-dir", node.dataDir]);
  const live = await ipam("check");
  assertEquals(live.code, 0, live.stdout + live.stderr);
  assertMatch(live.stdout, /\b1 attachments, 2 addresses\n/);
  assertMatch(live.stdout, /^consistent$/m);

  // Plant a second handle holding the live attachment's addresses, and an address that
  // no handle holds.
  const file = `${node.dataDir}/store.json`;
  const state = JSON.parse(await Deno.readTextFile(file)) as {
    revision: number;
    keys: Record<string, [string, number, number]>;
  };
  const net = "/ohno/v1/networks/checknet";
  const [liveHandle] = state.keys[`${net}/handles/embedded-check-1/eth0`]!;
  const rev = ++state.revision;
  state.keys[`${net}/handles/copycat/eth0`] = [
    JSON.stringify({ ...JSON.parse(liveHandle), containerID: "copycat" }),
    rev,
    rev,
  ];
  state.keys[`${net}/ips/10.88.0.77`] = [
    JSON.stringify({ containerID: "ghost", ifname: "eth0", ip: "10.88.0.77", createdAt: "" }),
    rev,
    rev,
  ];
  await Deno.writeTextFile(file, JSON.stringify(state));

  const bad = await ipam("check", "-o", "json");
  assert(bad.code !== 0, "check must fail");
  const report = JSON.parse(bad.stdout) as {
    ok: boolean;
    counts: Record<string, number>;
    problems: { kind: string; key: string; message: string }[];
  };
  assertEquals(report.ok, false);
  assertEquals([report.counts.handles, report.counts.addresses], [2, 3]);
  const found = report.problems.map((p) => `${p.kind} ${p.key}`).sort();
  assertEquals(found, [
    `duplicate-handle ${net}/handles/embedded-check-1/eth0`,
    `duplicate-handle ${net}/handles/embedded-check-1/eth0`,
    `orphan-address ${net}/ips/10.88.0.77`,
  ]);
  assert(report.problems.some((p) => p.message.includes("copycat/eth0")), bad.stdout);
  const table = await ipam("check");
  assert(table.code !== 0);
  assertMatch(table.stdout, /duplicate-handle .*\n(.|\n)*orphan-address .*10\.88\.0\.77/);
});
