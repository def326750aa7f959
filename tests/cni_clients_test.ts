/**
 * ohno under real CNI clients (libcni 1.1.2 inside): podman with its CNI backend and
 * containerd's `ctr run --cni`. Each runs inside a host namespace of the test, with its
 * own state dirs; the container gets its address, reaches the gateway, and removal
 * releases the address (ctr's DEL arrives with an empty CNI_NETNS).
 */
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { cniNode } from "./support/cni.ts";
import { clientsMissing, containerd, podman } from "./support/clients.ts";
import { ipJson, type IpLink } from "../netns/ip.ts";

const missing = clientsMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";

function conflist(name: string, bridge: string, subnet: string, dataDir: string, logFile: string) {
  return {
    cniVersion: "1.0.0",
    name,
    plugins: [{
      type: "ohno",
      bridge,
      logFile,
      logLevel: "debug",
      ipam: { type: "ohno", dataDir, ranges: [[{ subnet }]] },
    }],
  };
}

Deno.test({
  name: `podman runs a busybox container on an ohno network; podman rm releases it${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  async fn() {
    await using node = await cniNode({ network: "ohnopod" });
    const list = conflist("ohnopod", "ohnopm0", "10.82.0.0/24", node.dataDir, node.logFile);
    const pm = await podman(`${node.dataDir}/podman`, node.host.ns, list);
    try {
      const run = await pm.run([
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "ohnopod",
        pm.image,
        "sleep",
        "300",
      ]);
      assertEquals(run.code, 0, run.stderr);
      const addr = await pm.run(["exec", "c1", "ip", "-4", "addr", "show", "eth0"]);
      assertMatch(addr.stdout, /inet 10\.82\.0\.2\/24/);
      const ping = await pm.run(["exec", "c1", "ping", "-c", "1", "-W", "2", "10.82.0.1"]);
      assertEquals(ping.code, 0, ping.stdout + ping.stderr);
      assertEquals(node.allocations(), ["10.82.0.2"]);

      // A static address through podman's IP= in CNI_ARGS.
      const fixed = await pm.run([
        "run",
        "--rm",
        "--network",
        "ohnopod",
        "--ip",
        "10.82.0.50",
        pm.image,
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
      ]);
      assertMatch(fixed.stdout, /inet 10\.82\.0\.50\/24/, fixed.stderr);

      const rm = await pm.run(["rm", "-f", "c1"]);
      assertEquals(rm.code, 0, rm.stderr);
      assertEquals(node.allocations(), []);
      const ports = await ipJson<IpLink[]>(["link", "show", "master", "ohnopm0"], {
        netns: node.host.ns,
      });
      assertEquals(ports, []);
      const log = await Deno.readTextFile(node.logFile);
      assertMatch(log, /\[ADD [0-9a-f]{12} eth0\] attached/);
      assertMatch(log, /\[DEL [0-9a-f]{12} eth0\] detached/);
    } finally {
      await pm.run(["rm", "-af"]);
      await pm.run(["rmi", "-af"]);
    }
  },
});

Deno.test({
  name: `ctr run --cni: address, gateway, and a DEL with an empty CNI_NETNS releases it${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  async fn() {
    await using node = await cniNode({ network: "ohnoctr" });
    // ctr imports image archives: let podman write one of the busybox image.
    const pm = await podman(
      `${node.dataDir}/podman`,
      node.host.ns,
      conflist("unused", "x0", "10.0.0.0/24", node.dataDir, node.logFile),
    );
    const archive = `${node.dataDir}/busybox-docker.tar`;
    const save = await pm.run(["save", "--format", "docker-archive", "-o", archive, pm.image]);
    assertEquals(save.code, 0, save.stderr);
    const list = conflist("ohnoctr", "ohnoctr0", "10.81.0.0/24", node.dataDir, node.logFile);
    await using cd = await containerd(node.dataDir, node.host.ns, list, archive);
    const r = await cd.ctr([
      "run",
      "--rm",
      "--snapshotter",
      "native",
      "--cni",
      cd.image,
      "ctr1",
      "sh",
      "-c",
      "ip -4 addr show eth0; ping -c 1 -W 2 10.81.0.1",
    ]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    assertMatch(r.stdout, /inet 10\.81\.0\.2\/24/);
    assertMatch(r.stdout, /1 packets received/);
    // ctr sent DEL after the task exited: no netns, and the address is free again.
    assertEquals(node.allocations(), []);
    const log = await Deno.readTextFile(node.logFile);
    assert(/\[DEL ohnotest-ctr eth0\] start network=ohnoctr netns=- /.test(log), log);
    assertMatch(log, /\[DEL ohnotest-ctr eth0\] detached/);
    await pm.run(["rmi", "-af"]);
  },
});
