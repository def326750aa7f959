import { Command } from "commander";
import { assert, assertEquals, assertMatch, assertThrows } from "../tests/support/assert.ts";
import {
  DAEMON_FLAGS,
  type DaemonConfig,
  DaemonConfigError,
  type DaemonFlags,
  loadDaemonConfig,
  type LoadOptions,
} from "./config.ts";

const NOWHERE = "/nonexistent/ohno-test/ohno.json";

function load(
  opts: Omit<LoadOptions, "env"> & { env?: Record<string, string> } = {},
): DaemonConfig {
  const env = opts.env ?? {};
  return loadDaemonConfig({
    defaultFile: NOWHERE,
    hostname: () => "Host-1",
    ...opts,
    env: (k) => env[k],
  });
}

async function withFile<T>(content: unknown, fn: (path: string) => T): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ohnot-config-" });
  try {
    const path = `${dir}/ohno.json`;
    await Deno.writeTextFile(path, typeof content === "string" ? content : JSON.stringify(content));
    return fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("config: with no file, defaults (and the host name as node name)", () => {
  const c = load();
  assertEquals(c, {
    file: undefined,
    nodeName: "host-1",
    nodeIP: { source: "auto", addresses: [] },
    backend: "host-gw",
    vxlan: { vni: 1, port: 8472, directRouting: false },
    bgp: { nodeMesh: true, routeReflector: false, peers: [], holdTime: 90, gracefulRestart: true },
    mtu: "auto",
    pools: [],
    clusterCIDRs: [],
    masquerade: true,
    datastore: { type: "local", dataDir: "/var/lib/ohno/ipam" },
    kubernetes: { enabled: "auto" },
    cniBinDir: "/opt/cni/bin",
    cniConfDir: "/etc/cni/net.d",
    conflistName: "10-ohno.conflist",
    networkName: "ohno",
    bridge: "ohno0",
    runDir: "/run/ohno",
    socket: "/run/ohno/ipam.sock",
    stateDir: "/var/lib/ohno",
    logFile: "/var/log/ohno/daemon.log",
    logLevel: "info",
    resyncPeriodMs: 30_000,
    metricsAddress: "127.0.0.1:9753",
    cniLogFile: "/var/run/log/ohno.log",
    gcPeriodMs: 60_000,
    gcGracePeriodMs: 300_000,
    allowLauncher: false,
    kubeWatchIdleMs: 120_000,
  });
});

Deno.test("config: a full file is read, canonicalised and typed", async () => {
  const c = await withFile({
    nodeName: "node1",
    nodeIP: { source: "addresses", addresses: ["172.31.0.11", "FD00:172:31:0::11"] },
    backend: "host-gw",
    mtu: 1450,
    pools: [{ cidr: "10.244.0.0/16" }, { cidr: "fd10:244::/48", blockPrefix: 80 }],
    clusterCIDRs: ["10.244.0.0/15", "fd10:244::/48"],
    masquerade: false,
    datastore: {
      type: "etcd",
      etcd: {
        endpoints: ["https://172.31.0.1:2379"],
        ca: "/etc/ohno/ca.crt",
        cert: "/etc/ohno/c.crt",
        key: "/etc/ohno/c.key",
      },
    },
    kubernetes: { enabled: false },
    cniBinDir: "/lab/n1/bin/",
    cniConfDir: "/lab/n1/net.d",
    runDir: "/lab/n1/run",
    stateDir: "/lab/n1/state",
    logFile: "/lab/n1/ohno.log",
    logLevel: "DEBUG",
    resyncPeriod: "2m",
    metricsAddress: "[::1]:9999",
  }, (path) => load({ env: { OHNO_CONFIG: path } }));
  assertEquals(c.nodeIP, { source: "addresses", addresses: ["172.31.0.11", "fd00:172:31::11"] });
  assertEquals(c.pools, [{ cidr: "10.244.0.0/16", blockPrefix: 24 }, {
    cidr: "fd10:244::/48",
    blockPrefix: 80,
  }]);
  assertEquals(c.clusterCIDRs, ["10.244.0.0/15", "fd10:244::/48"]);
  assertEquals(c.datastore, {
    type: "etcd",
    dataDir: "/lab/n1/state/ipam",
    etcd: {
      endpoints: ["https://172.31.0.1:2379"],
      ca: "/etc/ohno/ca.crt",
      cert: "/etc/ohno/c.crt",
      key: "/etc/ohno/c.key",
    },
  });
  assertEquals([
    c.kubernetes.enabled,
    c.cniBinDir,
    c.socket,
    c.logLevel,
    c.resyncPeriodMs,
    c.mtu,
    c.masquerade,
  ], [
    "off",
    "/lab/n1/bin",
    "/lab/n1/run/ipam.sock",
    "debug",
    120_000,
    1450,
    false,
  ]);
});

Deno.test("config: the environment overrides the file, flags override both", async () => {
  await withFile({
    nodeName: "from-file",
    logLevel: "warn",
    datastore: { etcd: { endpoints: ["http://10.0.0.1:2379"] } },
  }, (path) => {
    const base = load({ flags: { config: path } });
    assertEquals([base.nodeName, base.logLevel, base.datastore.type], [
      "from-file",
      "warn",
      "etcd",
    ]);
    const env = {
      NODE_NAME: "from-env",
      OHNO_LOG_LEVEL: "error",
      NODE_IP: "172.31.0.12",
      OHNO_ETCD_ENDPOINTS: "http://10.0.0.2:2379,http://10.0.0.3:2379",
    };
    const e = load({ flags: { config: path }, env });
    assertEquals([e.nodeName, e.logLevel, e.nodeIP.addresses, e.datastore.etcd?.endpoints], [
      "from-env",
      "error",
      ["172.31.0.12"],
      ["http://10.0.0.2:2379", "http://10.0.0.3:2379"],
    ]);
    const f = load({
      flags: {
        config: path,
        nodeName: "from-flag",
        logLevel: "debug",
        datastore: "local",
        dataDir: "/tmp/x",
      },
      env,
    });
    assertEquals([f.nodeName, f.logLevel, f.datastore], ["from-flag", "debug", {
      type: "local",
      dataDir: "/tmp/x",
    }]);
  });
});

Deno.test("config: flags in their string forms", () => {
  const c = load({
    flags: {
      pool: "10.244.0.0/16:26, fd10:244::/56",
      clusterCidr: "10.0.0.0/8,fd10::/16",
      masquerade: "off",
      mtu: "1400",
      resyncPeriod: "500ms",
      nodeIpInterface: "eth1",
      kubernetes: "on",
      kubeconfig: "/etc/kubernetes/kubelet.conf",
      metricsAddress: ":9753",
    },
  });
  assertEquals(c.pools, [{ cidr: "10.244.0.0/16", blockPrefix: 26 }, {
    cidr: "fd10:244::/56",
    blockPrefix: 64,
  }]);
  assertEquals([c.masquerade, c.mtu, c.resyncPeriodMs, c.nodeIP], [false, 1400, 500, {
    source: "interface",
    addresses: [],
    interface: "eth1",
  }]);
  assertEquals(c.kubernetes, { enabled: "on", kubeconfig: "/etc/kubernetes/kubelet.conf" });
});

Deno.test("config: every bad value is refused with its source, key and value", async () => {
  const cases: [unknown, string][] = [
    [{ mtu: 70000 }, 'mtu 70000 must be "auto" or a whole number 576-65535'],
    [{ resyncPerod: "30s" }, 'resyncPerod "30s" is not a known key'],
    [
      { datastore: { etcd: { endpoint: ["x"] } } },
      'datastore.etcd.endpoint ["x"] is not a known key',
    ],
    [{ resyncPeriod: "soon" }, 'resyncPeriod "soon" is not a duration'],
    [{ resyncPeriod: "10ms" }, 'resyncPeriod "10ms" must be between 100ms and 24h'],
    [
      { pools: [{ cidr: "10.244.0.0/16", blockPrefix: 8 }] },
      "pools[0].blockPrefix 8 must be a prefix length 16-30 for 10.244.0.0/16",
    ],
    [{ pools: [{ cidr: "10.244.0.0/33" }] }, 'pools[0].cidr "10.244.0.0/33" is not a CIDR'],
    [
      { pools: [{ cidr: "10.244.0.0/16" }, { cidr: "10.244.8.0/24" }] },
      'pools "10.244.0.0/16 10.244.8.0/24" overlap',
    ],
    [
      { pools: [{ cidr: "10.244.0.0/16" }], clusterCIDRs: ["10.245.0.0/16"] },
      "do not contain the pool 10.244.0.0/16",
    ],
    [{ nodeIP: { addresses: ["10.0.0.1", "10.0.0.2"] } }, "holds more than one IPv4 address"],
    [
      { nodeIP: { addresses: ["10.0.0.300"] } },
      'nodeIP.addresses "10.0.0.300" is not an IP address',
    ],
    [{ nodeIP: { source: "interface" } }, 'nodeIP.source "interface" needs nodeIP.interface'],
    [
      { nodeIP: { source: "magic" } },
      'nodeIP.source "magic" must be one of auto, addresses, interface, default-route, kubernetes',
    ],
    [{ nodeName: "Node_1" }, 'nodeName "Node_1" is not a valid node name'],
    [{ cniBinDir: "opt/cni/bin" }, 'cniBinDir "opt/cni/bin" must be an absolute path'],
    [
      { datastore: { type: "etcd" } },
      "datastore.etcd.endpoints null must be set when datastore.type is etcd",
    ],
    [
      { datastore: { etcd: { endpoints: ["172.31.0.1:2379"] } } },
      'datastore.etcd.endpoints "172.31.0.1:2379" is not',
    ],
    [
      { datastore: { etcd: { endpoints: ["http://a:1"], cert: "/c" } } },
      'datastore.etcd.cert "/c" needs its pair',
    ],
    [{ datastore: { type: "zookeeper" } }, 'datastore.type "zookeeper" must be one of etcd, local'],
    [{ metricsAddress: "9753" }, 'metricsAddress "9753" is not HOST:PORT'],
    [{ backend: "ospf" }, 'backend "ospf" must be one of host-gw, vxlan, bgp'],
    [{ mtu: 1000, pools: [{ cidr: "fd10::/48" }] }, "mtu 1000 is below 1280"],
    [{ masquerade: "yes" }, 'masquerade "yes" must be true or false'],
    [{ logLevel: "loud" }, 'logLevel "loud" must be one of debug, info, warn, error'],
    [
      { bridge: "a-very-long-bridge-name" },
      'bridge "a-very-long-bridge-name" is not an interface name',
    ],
    [
      { conflistName: "ohno.conf" },
      'conflistName "ohno.conf" must be a file name ending in .conflist',
    ],
    [
      { kubernetes: { enabled: "off" }, nodeIP: { source: "kubernetes" } },
      'nodeIP.source "kubernetes" needs Kubernetes',
    ],
    [[1, 2], "must be an object"],
  ];
  for (const [doc, message] of cases) {
    await withFile(doc, (path) => {
      const e = assertThrows(() => load({ flags: { config: path } }), DaemonConfigError);
      assert(
        e.message.startsWith(`${path}: `) || e.source === "config",
        `source missing: ${e.message}`,
      );
      assert(
        e.message.includes(message),
        `${JSON.stringify(doc)}:\n  got:  ${e.message}\n  want: …${message}…`,
      );
    });
  }
  await withFile("{ not json", (path) => {
    assertThrows(
      () => load({ env: { OHNO_CONFIG: path } }),
      DaemonConfigError,
      `${path}: not valid JSON`,
    );
  });
  assertThrows(
    () => load({ flags: { config: "/nonexistent/x.json" } }),
    DaemonConfigError,
    "--config: cannot read /nonexistent/x.json",
  );
  assertThrows(
    () => load({ flags: { mtu: "big" } }),
    DaemonConfigError,
    '--mtu: mtu "big" must be',
  );
  assertThrows(
    () => load({ env: { NODE_IP: "x" } }),
    DaemonConfigError,
    'env NODE_IP: nodeIP.addresses "x" is not an IP address',
  );
  assertThrows(
    () => load({ flags: { pool: "10.244.0.0/16:99" } }),
    DaemonConfigError,
    "--pool: pools.blockPrefix 99",
  );
});

Deno.test("config: DAEMON_FLAGS registers with commander and round-trips into the config", async () => {
  const names = DAEMON_FLAGS.map((f) => f.name);
  assertEquals(new Set(names).size, names.length);
  const envs = DAEMON_FLAGS.flatMap((f) => (f.env ? [f.env] : []));
  assertEquals(new Set(envs).size, envs.length);
  const cmd = new Command("daemon").exitOverride();
  for (const f of DAEMON_FLAGS) cmd.option(f.flags, f.description);
  await withFile({ nodeName: "node7", pools: [{ cidr: "10.244.0.0/16" }] }, (path) => {
    cmd.parse([
      "--config",
      path,
      "--node-ip",
      "172.31.0.17,fd00:172:31::17",
      "--run-dir",
      "/lab/n7/run",
      "--resync-period",
      "1s",
    ], { from: "user" });
    const c = load({ flags: cmd.opts<DaemonFlags>() });
    assertEquals([c.nodeName, c.nodeIP.addresses, c.socket, c.resyncPeriodMs, c.clusterCIDRs], [
      "node7",
      ["172.31.0.17", "fd00:172:31::17"],
      "/lab/n7/run/ipam.sock",
      1000,
      ["10.244.0.0/16"],
    ]);
  });
});

Deno.test("config: vxlan settings from the file and flags; bad ones named", () => {
  const c = loadDaemonConfig({
    flags: { backend: "vxlan", vxlanPort: "4789", vxlanDirectRouting: "on", nodeName: "n1" },
    env: () => undefined,
  });
  assertEquals(c.backend, "vxlan");
  assertEquals(c.vxlan, { vni: 1, port: 4789, directRouting: true });
  for (
    const [flags, msg] of [
      [{ vxlanVni: "0" }, "vxlanVni"],
      [{ vxlanPort: "70000" }, "vxlanPort"],
      [{ vxlanDirectRouting: "maybe" }, "vxlanDirectRouting"],
      [{ backend: "ospf" }, "backend"],
    ] as const
  ) {
    assertThrows(
      () => loadDaemonConfig({ flags: { nodeName: "n1", ...flags }, env: () => undefined }),
      DaemonConfigError,
      msg,
    );
  }
});

Deno.test("config: bgp settings from the file and the flags; bad ones named", async () => {
  await withFile({
    backend: "bgp",
    bgpAsNumber: 64512,
    bgpRouterId: "10.0.0.1",
    bgpNodeMesh: false,
    bgpRouteReflector: true,
    bgpPeers: [{ address: "fd00::0001", asNumber: 65000, password: "pw" }],
    bgpHoldTime: "9s",
    bgpGracefulRestart: false,
  }, (file) => {
    const c = load({ flags: { config: file } });
    assertEquals(c.backend, "bgp");
    assertEquals(c.bgp, {
      asNumber: 64512,
      routerId: "10.0.0.1",
      nodeMesh: false,
      routeReflector: true,
      peers: [{ address: "fd00::1", asNumber: 65000, password: "pw" }],
      holdTime: 9,
      gracefulRestart: false,
    });
  });
  const c = load({ flags: { bgpPeers: "65000@172.31.0.1,65001@fd00::1" } });
  assertEquals(c.bgp.peers, [{ address: "172.31.0.1", asNumber: 65000 }, {
    address: "fd00::1",
    asNumber: 65001,
  }]);
  for (
    const [flags, want] of [
      [{ bgpPeers: "172.31.0.1" }, /bgpPeers "172.31.0.1" is not AS@ADDRESS/],
      [{ bgpPeers: "65000@nowhere" }, /bgpPeers.address "nowhere" is not an IP address/],
      [{ bgpAsNumber: "0" }, /bgpAsNumber "0" must be a whole number 1-4294967294/],
      [{ bgpRouterId: "fd00::1" }, /bgpRouterId "fd00::1" is not an IPv4 address/],
      [{ bgpHoldTime: "2s" }, /bgpHoldTime "2s" must be whole seconds/],
    ] as const
  ) {
    assertThrows(() => load({ flags }), DaemonConfigError);
    try {
      load({ flags });
    } catch (e) {
      assertMatch((e as Error).message, want);
    }
  }
  await withFile({ bgpPeers: [{ address: "10.0.0.1", asNumber: 1, password: 'a"b' }] }, (file) => {
    assertThrows(
      () => load({ flags: { config: file } }),
      DaemonConfigError,
      'bgpPeers[0].password "(hidden)"',
    );
  });
});
