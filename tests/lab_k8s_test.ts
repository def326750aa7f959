/**
 * The agent with Kubernetes, against the fake API server (tests/e2e/ has the real one),
 * listening inside the lab namespace where the agents reach it: node IP discovery,
 * NetworkUnavailable=False only after the routes, a deleted Node's blocks released, and
 * GC of allocations whose pod is gone (matched by UID).
 */
import { assert, assertEquals } from "./support/assert.ts";
import { kubeLab } from "./support/kubelab.ts";
import { etcdMissing } from "./support/etcd.ts";
import { metric, within } from "./support/lab.ts";
import * as labs from "../lab/lab.ts";
import { labOpen } from "../lab/topology.ts";
import { runCommand } from "../netns/netns.ts";

const missing = etcdMissing();
const skip = missing ? ` [SKIP: ${missing}]` : "";

Deno.test({
  name:
    `Kubernetes: node IP discovery, NetworkUnavailable after routes, deleted Node released, pod GC${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const name = `k${Deno.pid % 100000}`;
    await using k8s = await kubeLab({
      name,
      nodes: 2,
      extraConfig: { gcPeriod: "1s", gcGracePeriod: "2s" },
    });
    const fake = k8s.fake;
    {
      // Node IP discovery: the agents registered the Nodes' InternalIPs.
      const nodes = JSON.parse((await labs.ipam(name, ["nodes", "-o", "json"])).stdout) as {
        node: string;
        ips: string[];
      }[];
      assertEquals(nodes.map((n) => [n.node, n.ips]), [
        ["node1", ["172.31.0.11", "fd00:172:31::11"]],
        ["node2", ["172.31.0.12", "fd00:172:31::12"]],
      ]);
      // NetworkUnavailable=False was patched, and only after the routes were programmed.
      for (const n of ["node1", "node2"]) {
        const conds =
          (fake.getNode(n)!.status as { conditions: { type: string; status: string }[] })
            .conditions;
        assertEquals(conds.find((c) => c.type === "NetworkUnavailable")?.status, "False");
        assertEquals(
          conds.find((c) => c.type === "Ready")?.status,
          "True",
          "the kubelet's condition kept",
        );
        const log = Deno.readTextFileSync(`${labs.labDir(name)}/${n}/daemon.log`);
        const routed = log.indexOf("routes programmed");
        const ready = log.indexOf("] ready");
        assert(routed >= 0 && ready > routed, "routes programmed before ready");
      }
      assert(
        fake.requests.some((r) => r.method === "PATCH" && r.path.endsWith("/nodes/node1/status")),
      );

      // Pod GC: a pod the API knows stays; one it does not know is released after the grace.
      const kept = fake.putPod("kept", { namespace: "lab", nodeName: "node1" });
      await labs.podAdd(name, "node1", "kept", { uid: kept.metadata.uid });
      const ghostAdded = Date.now();
      const ghost = await labs.podAdd(name, "node1", "ghost"); // a UID the API has never heard of
      assertEquals(ghost.ips.length, 2, "the ghost pod got an address of each family");
      const owners = async () =>
        (JSON.parse((await labs.ipam(name, ["ls", "--node", "node1", "-o", "json"])).stdout) as {
          podName?: string;
        }[]).map((r) => r.podName).sort();
      const first = await owners();
      // Within the 2 s grace the ghost must still hold its addresses; a loaded machine may
      // only get to look after the grace, and then either answer is right.
      if (Date.now() - ghostAdded < 2000) {
        assertEquals(first, ["ghost", "ghost", "kept", "kept"], "released before the grace");
      } else {
        assertEquals(first.filter((p) => p === "kept"), ["kept", "kept"]);
      }
      await within(
        10_000,
        "the ghost pod's addresses released by GC",
        async () => JSON.stringify(await owners()) === JSON.stringify(["kept", "kept"]),
      );

      // A deleted Node: its blocks and addresses are released, and routes to it go.
      await labs.podAdd(name, "node2", "onnode2");
      await labs.stopAgent(name, "node2");
      fake.deleteNode("node2");
      await within(10_000, "node2's blocks released", async () => {
        const blocks = JSON.parse((await labs.ipam(name, ["blocks", "-o", "json"])).stdout) as {
          node: string;
        }[];
        return !blocks.some((b) => b.node === "node2");
      });
      const lab = labOpen(name);
      try {
        await within(5000, "routes to node2 gone from node1", async () => {
          const r = await new Deno.Command("ip", {
            args: ["-n", `ohno-lab-${name}-node1`, "route", "show", "proto", "111"],
          })
            .output();
          return !new TextDecoder().decode(r.stdout).includes("172.31.0.12");
        });
      } finally {
        lab.close();
      }
      const left = JSON.parse((await labs.ipam(name, ["ls", "-o", "json"])).stdout) as {
        node: string;
      }[];
      assert(!left.some((r) => r.node === "node2"), "node2's addresses released");
      assertEquals((await labs.ipam(name, ["check"])).code, 0);
    }
  },
});

Deno.test({
  name:
    `Kubernetes: an RBAC 403 is not retried in silence: logged, counted, the agent not ready with the reason until allowed again${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const name = `f${Deno.pid % 100000}`;
    await using k8s = await kubeLab({ name, nodes: 1 });
    const fake = k8s.fake;
    const lab = labOpen(name);
    try {
      const ns = lab.node("node1").ns;
      const readyz = async () =>
        (await runCommand(ns, "curl", {
          args: ["-s", "--max-time", "2", "http://127.0.0.1:9753/readyz"],
        })).stdout;
      assertEquals(await readyz(), "ok\n");
      // The ClusterRole loses "list/watch nodes": every Node request is refused from now on.
      fake.fail({
        status: 403,
        reason: "Forbidden",
        message: 'nodes is forbidden: User "system:serviceaccount:kube-system:ohno" cannot ' +
          'watch resource "nodes" in API group "" at the cluster scope',
        match: /^GET \/api\/v1\/nodes\?/,
      });
      fake.closeWatches();
      await within(20_000, "not ready with the reason", async () => {
        const r = await readyz();
        return r.startsWith("not ready: Kubernetes watch-nodes:") && r.includes("403 Forbidden");
      });
      const errors = await runCommand(ns, "curl", {
        args: ["-s", "--max-time", "2", "http://127.0.0.1:9753/metrics"],
      });
      const m = /^ohno_kubernetes_errors_total\{op="watch-nodes"\} (\d+)$/m.exec(errors.stdout);
      assert(m && Number(m[1]) >= 1, `counted: ${m?.[0]}`);
      const log = Deno.readTextFileSync(`${labs.labDir(name)}/node1/daemon.log`);
      assert(log.includes("the Kubernetes API refuses the agent"), "logged");
      // Allowed again: ready again, without a restart.
      fake.clearFaults();
      await within(60_000, "ready again", async () => (await readyz()) === "ok\n");
    } finally {
      lab.close();
    }
  },
});

Deno.test({
  name:
    `Kubernetes: another conflist sorting before ohno's is reported: log, metric, a Warning Event on the Node${skip}`,
  ignore: !!missing,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const name = `c${Deno.pid % 100000}`;
    await using k8s = await kubeLab({ name, nodes: 1 });
    const lab = labOpen(name);
    try {
      const ns = lab.node("node1").ns;
      const shadowed = () => metric(ns, "ohno_conflist_shadowed");
      assertEquals(await shadowed(), 0);
      const netd = `${labs.labDir(name)}/node1/cni/net.d`;
      Deno.writeTextFileSync(`${netd}/00-other.conflist`, "{}");
      await within(30_000, "reported", async () => (await shadowed()) === 1);
      await within(
        10_000,
        "the Event",
        () =>
          k8s.fake.events.some((e) =>
            e.reason === "ConflistShadowed" &&
            (e.involvedObject as { name: string }).name === "node1" &&
            String(e.message).includes("00-other.conflist")
          ),
      );
      const log = Deno.readTextFileSync(`${labs.labDir(name)}/node1/daemon.log`);
      assert(log.includes("another network configuration comes first"), "logged");
      Deno.removeSync(`${netd}/00-other.conflist`);
      await within(30_000, "cleared", async () => (await shadowed()) === 0);
    } finally {
      lab.close();
    }
  },
});
