/**
 * ohno on real Kubernetes (`./dev e2e`): a lab cluster of 3 real nodes (containerd and a
 * kubelet each, in a network and mount namespace of their own; kube-apiserver,
 * controller-manager and scheduler on the lab's etcd), ohno installed from
 * deploy/kubernetes/ohno.yaml as the README tells a user, then what a user does to it.
 *
 * Needs the programs tests/e2e/build.sh builds (`./dev e2e` builds what is missing); not
 * part of `./dev test` (see tests/e2e/README.md for why and how long it takes).
 * @module
 */

import {
  kubeDown,
  type KubeLabState,
  kubeletStart,
  kubeletStop,
  kubeUp,
  nodeRun,
} from "../../lab/kube.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { OHNO } from "../support/ohno.ts";
import { within } from "../support/wait.ts";
import {
  allocations,
  allPodsRunning,
  BIN,
  dsSettled,
  installOhno,
  ipam,
  type Item,
  k,
  kjson,
  missingPrograms,
  nodeReady,
  pingMesh,
  podIPs,
  podSpec,
} from "./cluster.ts";

const NODES = 3;

/**
 * What a Kubernetes lab leaves behind when it does not clean up: a process of its (the
 * control plane, a node's holder, containerd, kubelet, shims and pods, by pid or cgroup),
 * its cgroups, node directories, mount points it made, its namespaces.
 */
function leftovers(s: KubeLabState): string[] {
  const found: string[] = [];
  const pids = [
    s.etcd.pid,
    ...Object.values(s.control),
    ...s.nodes.flatMap((n) => [n.holder, n.containerd, n.kubelet]),
  ];
  for (const pid of pids) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      if (!/\) Z /.test(stat)) found.push(`process ${pid}: ${stat.slice(0, 60)}`);
    } catch {
      // gone
    }
  }
  for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
    for (const n of s.nodes) {
      for (const d of [`/sys/fs/cgroup/${e.name}/${n.cgroup}`]) {
        try {
          Deno.statSync(d);
          found.push(`cgroup ${d}`);
        } catch {
          // gone
        }
      }
    }
  }
  for (const p of [...s.nodes.map((n) => n.root), ...s.madeDirs]) {
    try {
      Deno.statSync(p);
      found.push(`path ${p}`);
    } catch {
      // gone
    }
  }
  for (const e of Deno.readDirSync("/run/netns")) {
    if (e.name.startsWith(`ohno-lab-${s.name}`)) found.push(`netns ${e.name}`);
  }
  return found;
}

/** Progress on stderr: an e2e run takes minutes. */
function say(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[e2e] ${line}\n`));
}

const e2eIgnore = missingPrograms();

Deno.test({
  name: e2eIgnore.length
    ? `[SKIP: ${e2eIgnore.join(", ")} not built: ./dev e2e builds them] e2e: real Kubernetes`
    : "e2e: real Kubernetes with ohno installed from deploy/kubernetes/ohno.yaml",
  ignore: e2eIgnore.length > 0,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const name = `t${Deno.pid}zk`;
    const t0 = performance.now();
    const s = await kubeUp({
      name,
      nodes: NODES,
      bin: BIN,
      ohno: OHNO,
      say,
    });
    const nodes = s.nodes.map((n) => n.name);
    const node = (n: string) => s.nodes.find((x) => x.name === n)!;
    let down = false;
    try {
      await t.step(
        "ohno installed from the manifest: a pod on every node, every node Ready",
        async () => {
          await installOhno(s);
          for (const n of nodes) await within(60_000, `${n} Ready`, () => nodeReady(name, n));
          for (const n of s.nodes) {
            const r = await nodeRun(n.holder, "ls", ["/opt/cni/bin", "/etc/cni/net.d"]);
            assert(r.stdout.includes("ohno\n"), `${n.name}: no /opt/cni/bin/ohno: ${r.stdout}`);
            assert(/\d+-ohno\.conflist/.test(r.stdout), `${n.name}: no ohno conflist: ${r.stdout}`);
            // Not privileged, and still its masquerade table (NET_ADMIN is enough for nftables).
            const nft = await nodeRun(n.holder, "nft", ["list", "table", "inet", "ohno"]);
            assert(nft.success && nft.stdout.includes("masquerade"), `${n.name}: ${nft.stderr}`);
          }
          say(
            `installed, every node Ready (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
          );
        },
      );

      await t.step(
        "cnitool 1.3 ADD, CHECK, STATUS, GC and DEL against a node's installed conflist",
        async () => {
          const n = node(nodes[1]!);
          const conf = (await nodeRun(n.holder, "ls", ["/etc/cni/net.d"])).stdout.split("\n")
            .find((f) => f.endsWith("ohno.conflist"))!;
          const installed = JSON.parse(
            (await nodeRun(n.holder, "cat", [`/etc/cni/net.d/${conf}`])).stdout,
          );
          // The installed network chains Debian's portmap, which speaks CNI 1.0.0 at most, so
          // the conflist offers 1.0.0 only and libcni skips GC and STATUS for it. They run on
          // the same network without portmap at 1.1.0. cnitool's GC passes no valid
          // attachment, so it releases every attachment of the network on the node: this
          // step runs before any pod exists.
          const gcDir = `/tmp/e2e-cnitool-${name}`;
          Deno.mkdirSync(gcDir, { recursive: true });
          const ohnoPlugin = installed.plugins.find((p: { type: string }) => p.type === "ohno");
          Deno.writeTextFileSync(
            `${gcDir}/10-gc.conflist`,
            JSON.stringify({
              cniVersion: "1.1.0",
              cniVersions: ["1.0.0", "1.1.0"],
              name: installed.name,
              plugins: [ohnoPlugin],
            }),
          );
          const tool = (dir: string, verb: string, net: string, netns: string) =>
            nodeRun(n.holder, "env", [
              ...["CNI_PATH=/opt/cni/bin", `NETCONFPATH=${dir}`, `${BIN}/cnitool`],
              ...[verb, net, netns],
            ]);
          const ipsOf = (out: string) =>
            (JSON.parse(out).ips as { address: string }[]).map((i) => i.address.split("/")[0]!);
          for (const x of ["e2e-cni1", "e2e-cni2"]) {
            assert((await nodeRun(n.holder, "ip", ["netns", "add", x])).success);
          }
          try {
            const [ns1, ns2] = ["/run/netns/e2e-cni1", "/run/netns/e2e-cni2"];
            const add = await tool("/etc/cni/net.d", "add", installed.name, ns1);
            assert(add.success, `cnitool add: ${add.stderr}`);
            const ips = ipsOf(add.stdout);
            assertEquals(ips.length, 2);
            const held = await allocations(s);
            assert(
              ips.every((ip) => held.some((a) => a.ip === ip && a.node === n.name)),
              "cnitool's addresses in ipam ls",
            );
            const check = await tool("/etc/cni/net.d", "check", installed.name, ns1);
            assert(check.success, `cnitool check: ${check.stderr}`);
            const st = await tool("/etc/cni/net.d", "status", installed.name, ns1);
            assert(st.success, `cnitool status: ${st.stderr}`);
            const del = await tool("/etc/cni/net.d", "del", installed.name, ns1);
            assert(del.success, `cnitool del: ${del.stderr}`);
            const after = await allocations(s);
            assert(ips.every((ip) => !after.some((a) => a.ip === ip)), "DEL released them");

            // CNI 1.1: STATUS and GC reach ohno. GC releases both attachments (cnitool
            // names none valid) and removes their host veths.
            const add1 = await tool(gcDir, "add", installed.name, ns1);
            assert(add1.success, `cnitool add (1.1.0): ${add1.stderr}`);
            const add2 = await tool(gcDir, "add", installed.name, ns2);
            assert(add2.success, `cnitool add (1.1.0): ${add2.stderr}`);
            const both = [...ipsOf(add1.stdout), ...ipsOf(add2.stdout)];
            const st2 = await tool(gcDir, "status", installed.name, ns2);
            assert(st2.success, `cnitool status (1.1.0): ${st2.stderr}`);
            const veths = async () =>
              (await nodeRun(n.holder, "ip", ["-o", "link", "show", "master", ohnoPlugin.bridge]))
                .stdout.split("\n").filter(Boolean).length;
            assertEquals(await veths(), 2, "two host veths on the bridge before GC");
            const gc = await tool(gcDir, "gc", installed.name, ns2);
            assert(gc.success, `cnitool gc: ${gc.stderr}`);
            const left = await allocations(s);
            assert(both.every((ip) => !left.some((a) => a.ip === ip)), "GC released them");
            assertEquals(await veths(), 0, "GC removed their host veths");
          } finally {
            for (const x of ["e2e-cni1", "e2e-cni2"]) {
              await nodeRun(n.holder, "ip", ["netns", "del", x]);
            }
            Deno.removeSync(gcDir, { recursive: true });
          }
        },
      );

      await t.step(
        "two pods per node through the API: every pod pings every other (IPv4, IPv6)",
        async () => {
          for (const n of nodes) {
            for (const x of ["a", "b"]) {
              await k(name, ["apply", "-f", "-"], podSpec(`p-${n}-${x}`, n));
            }
          }
          await within(
            180_000,
            "6 pods running with 2 addresses",
            () => allPodsRunning(name, 2 * NODES),
          );
          assertEquals(await pingMesh(name), []);
        },
      );

      await t.step("kubectl delete pod: the kubelet's CNI DEL releases the address", async () => {
        const before = await allocations(s);
        const ips = (await podIPs(name)).get(`p-${nodes[0]}-b`)!;
        assert(
          ips.every((ip) => before.some((a) => a.ip === ip)),
          `pod addresses not in ipam ls: ${ips}`,
        );
        await k(name, ["delete", "pod", `p-${nodes[0]}-b`, "--wait=true"]);
        await within(60_000, "addresses released", async () => {
          const now = await allocations(s);
          return ips.every((ip) => !now.some((a) => a.ip === ip));
        });
      });

      await t.step("crictl runp, stopp and rmp against a node's containerd", async () => {
        const n = node(nodes[2]!);
        // The kubelet removes sandboxes it did not make (and their addresses with them).
        await kubeletStop(name, n.name);
        const crictl = (...a: string[]) =>
          nodeRun(n.holder, `${BIN}/crictl`, [
            "-r",
            "unix:///run/containerd/containerd.sock",
            ...a,
          ]);
        const sb = `/tmp/e2e-sandbox-${name}.json`;
        Deno.writeTextFileSync(
          sb,
          JSON.stringify({
            metadata: {
              name: "crictl-pod",
              namespace: "e2e",
              uid: crypto.randomUUID(),
              attempt: 0,
            },
            log_directory: "/tmp",
            linux: {},
          }),
        );
        try {
          const run = await crictl("runp", sb);
          assert(run.success, `crictl runp: ${run.stderr}`);
          const id = run.stdout.trim();
          const insp = JSON.parse((await crictl("inspectp", id)).stdout);
          const ip = insp.status.network.ip as string;
          const held = await allocations(s);
          assert(
            held.some((a) => a.ip === ip && a.node === n.name),
            `crictl pod's ${ip} on ${n.name} in ipam ls: ${
              JSON.stringify(held.map((a) => [a.ip, a.node]))
            }`,
          );
          assert((await crictl("stopp", id)).success, "crictl stopp");
          await within(
            20_000,
            "stopp released the address",
            async () => !(await allocations(s)).some((a) => a.ip === ip),
          );
          assert((await crictl("rmp", id)).success, "crictl rmp");
        } finally {
          Deno.removeSync(sb);
          kubeletStart(name, n.name);
        }
        // The new kubelet serves the node's pods again (exec) before the next step.
        await within(
          120_000,
          `${n.name}'s kubelet serving its pods`,
          async () => (await pingMesh(name)).length === 0,
        );
      });

      await t.step(
        "kubectl rollout restart ds/ohno while pods run: connectivity holds, no address twice",
        async () => {
          await k(name, ["-n", "kube-system", "rollout", "restart", "ds/ohno"]);
          const failures: string[] = [];
          let rounds = 0;
          const until = performance.now() + 240_000;
          // Pings round after round until the rollout has replaced every agent.
          while (performance.now() < until) {
            failures.push(...await pingMesh(name));
            rounds++;
            const ds = await kjson<Item>(name, ["-n", "kube-system", "get", "ds", "ohno"]);
            if (ds.status?.updatedNumberScheduled === NODES && ds.status?.numberReady === NODES) {
              break;
            }
          }
          assert(
            rounds >= 2,
            "the rollout finished before a second ping round (it was not observed)",
          );
          assertEquals(failures, []);
          const all = await allocations(s);
          assertEquals(new Set(all.map((a) => a.ip)).size, all.length, "an address held twice");
          // `ohno ipam check` exits non-zero on any problem (ipam() throws then).
          assert((await ipam(s, ["check"])).includes("consistent"));
        },
      );

      await t.step(
        "the agent given SYS_ADMIN and the host's /run/netns does the pods' network work",
        async () => {
          // As docs/daemon.md tells an operator to; the shipped manifest leaves it to the plugin.
          const patch = [
            {
              op: "add",
              path: "/spec/template/spec/containers/0/securityContext/capabilities/add/-",
              value: "SYS_ADMIN",
            },
            {
              op: "add",
              path: "/spec/template/spec/volumes/-",
              // /run/netns itself, the mount point (made shared in lab/kube.ts): containerd
              // refuses HostToContainer for a path under a private mount, as the lab's / is.
              value: { name: "netns", hostPath: { path: "/run/netns" } },
            },
            {
              op: "add",
              path: "/spec/template/spec/containers/0/volumeMounts/-",
              value: {
                name: "netns",
                mountPath: "/var/run/netns",
                mountPropagation: "HostToContainer",
                readOnly: true,
              },
            },
          ];
          await k(name, [
            "-n",
            "kube-system",
            "patch",
            "ds/ohno",
            "--type=json",
            "-p",
            JSON.stringify(patch),
          ]);
          await within(240_000, "the patched agents ready on every node", async () => {
            const ds = await kjson<Item>(name, ["-n", "kube-system", "get", "ds", "ohno"]);
            return ds.status?.updatedNumberScheduled === NODES &&
              ds.status?.numberReady === NODES && await dsSettled(name);
          });
          const calls = async (n: string) => {
            const r = await nodeRun(node(n).holder, "curl", [
              "-s",
              "http://127.0.0.1:9753/metrics",
            ]);
            const m = /^ohno_ipam_request_duration_seconds_count\{op="cni"\} (\d+)$/m.exec(
              r.stdout,
            );
            return Number(m?.[1] ?? 0);
          };
          for (const n of nodes) {
            await k(name, ["apply", "-f", "-"], podSpec(`w-${n}`, n));
          }
          await within(180_000, "the new pods running", () => allPodsRunning(name, 3 * NODES - 1));
          for (const n of nodes) {
            assert(await calls(n) >= 1, `${n}: its agent did no CNI call (POST /v1/cni)`);
          }
          assertEquals(await pingMesh(name), []);
          // DEL through the agent too: the address is released.
          const gone = `w-${nodes[1]}`;
          const ips = (await podIPs(name)).get(gone)!;
          const before = await calls(nodes[1]!);
          await k(name, ["delete", "pod", gone, "--wait=true"]);
          await within(60_000, `${gone}'s addresses released`, async () => {
            const all = await allocations(s);
            return ips.every((ip) => !all.some((a) => a.ip === ip));
          });
          assert(await calls(nodes[1]!) > before, "the DEL went through the agent");
          assert((await ipam(s, ["check"])).includes("consistent"));
        },
      );

      await t.step(
        "a node's containerd and kubelet killed and restarted: pods come back, ipam check clean",
        async () => {
          const n = node(nodes[0]!);
          const { kubeNodeRestart } = await import("../../lab/kube.ts");
          const before = await podIPs(name);
          await kubeNodeRestart(name, n.name);
          // The API still shows the pods as they were; they are back when the new kubelet
          // serves them again (exec) and they answer.
          let last: string[] = [];
          await within(180_000, `the pods answer again: ${last.join("; ")}`, async () => {
            last = await pingMesh(name);
            return last.length === 0;
          }).catch((e) => {
            throw new Error(`${e.message}; last failures: ${last.slice(0, 4).join("; ")}`);
          });
          assert(await nodeReady(name, n.name), `${n.name} Ready`);
          assertEquals(await podIPs(name), before, "the pods kept their addresses");
          // `ohno ipam check` exits non-zero on any problem (ipam() throws then).
          assert((await ipam(s, ["check"])).includes("consistent"));
        },
      );

      await t.step("kubectl delete node: that node's blocks are released", async () => {
        const gone = nodes[2]!;
        const blocksOf = async () =>
          (JSON.parse(await ipam(s, ["blocks", "-o", "json"])) as { node: string }[]).filter((b) =>
            b.node === gone
          );
        assert((await blocksOf()).length > 0, `${gone} holds no block before`);
        await k(name, ["delete", "node", gone]);
        await within(
          120_000,
          `${gone}'s blocks released`,
          async () => (await blocksOf()).length === 0,
        );
      });

      await t.step("the whole lab comes down, nothing of it left on the machine", async () => {
        const removed = await kubeDown(name);
        down = true;
        assertEquals(removed.length, NODES + 2, `namespaces removed: ${removed}`);
        assertEquals(leftovers(s), []);
      });
    } finally {
      if (!down) await kubeDown(name);
      say(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
  },
});
