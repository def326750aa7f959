/**
 * Pod create → Ready on real Kubernetes (`./dev bench kube`): one lab node (containerd and
 * a kubelet, tests/e2e), ohno installed from its manifest; batches of 30 pods created
 * through the API, with ohno's conflist and with the reference bridge + host-local
 * conflist on the same node, alternately. The reference wins by sorting first in
 * /etc/cni/net.d (containerd reloads the directory when it changes); each batch checks
 * that its pods' addresses come from the conflist it meant to measure.
 * @module
 */

import { kubeDown, kubeUp } from "../../lab/kube.ts";
import { BIN, installOhno, type Item, k, kjson, missingPrograms } from "../e2e/cluster.ts";
import { OHNO } from "../support/ohno.ts";
import { within } from "../support/wait.ts";
import { ms, note, printTable, ratio, summarize } from "./stats.ts";

const REF_CONFLIST = "00-ref.conflist";
const REF_SUBNET = "10.88.0.0/16";

function podList(prefix: string, n: number): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "List",
    items: Array.from({ length: n }, (_, i) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `${prefix}-${i}`, labels: { bench: prefix } },
      spec: {
        nodeName: "node1",
        terminationGracePeriodSeconds: 0,
        automountServiceAccountToken: false,
        containers: [{ name: "c", image: "docker.io/ohno/busybox:e2e", imagePullPolicy: "Never" }],
      },
    })),
  });
}

/** Creates `n` pods at once; returns each pod's create → Ready time (ms) as polled, and their IPs. */
async function batch(lab: string, prefix: string, n: number) {
  const t0 = performance.now();
  await k(lab, ["apply", "-f", "-"], podList(prefix, n));
  const ready = new Map<string, number>();
  const ips = new Map<string, string>();
  await within(300_000, `${n} pods Ready`, async () => {
    const list = await kjson<{ items: Item[] }>(lab, ["get", "pods", "-l", `bench=${prefix}`]);
    const now = performance.now() - t0;
    for (const p of list.items) {
      const ok = p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
      if (ok && !ready.has(p.metadata.name)) {
        ready.set(p.metadata.name, now);
        ips.set(p.metadata.name, p.status?.podIPs?.[0]?.ip ?? "");
      }
    }
    return ready.size === n;
  });
  const total = performance.now() - t0;
  await k(lab, ["delete", "pods", "-l", `bench=${prefix}`, "--wait=true", "--timeout=300s"]);
  return { times: [...ready.values()], total, ips: [...ips.values()] };
}

export async function benchKube(rounds = 3, pods = 30): Promise<void> {
  const missing = missingPrograms();
  if (missing.length) {
    note(`kube: skipped: ${missing.join(", ")} not built (./dev e2e builds them)`);
    return;
  }
  const name = `t${Deno.pid}zb`;
  const s = await kubeUp({ name, nodes: 1, bin: BIN, ohno: OHNO, say: (l) => note(`kube: ${l}`) });
  try {
    await installOhno(s);
    const netd = `${s.nodes[0]!.root}/etc/cni/net.d`;
    const useRef = async (on: boolean) => {
      if (on) {
        Deno.writeTextFileSync(
          `${netd}/${REF_CONFLIST}`,
          JSON.stringify({
            cniVersion: "1.0.0",
            name: "ref",
            plugins: [{
              type: "bridge",
              bridge: "cni0",
              isGateway: true,
              ipMasq: false,
              ipam: { type: "host-local", ranges: [[{ subnet: REF_SUBNET }]] },
            }],
          }),
        );
      } else {
        await Deno.remove(`${netd}/${REF_CONFLIST}`).catch(() => {});
      }
      // containerd reloads /etc/cni/net.d on change; give it the moment it takes.
      await new Promise((r) => setTimeout(r, 2000));
    };
    const arms: Record<string, { times: number[]; totals: number[] }> = {
      ohno: { times: [], totals: [] },
      ref: { times: [], totals: [] },
    };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? ["ref", "ohno"] : ["ohno", "ref"];
      for (const arm of order) {
        await useRef(arm === "ref");
        const b = await batch(name, `${arm}${r}`, pods);
        const fromRef = b.ips.filter((ip) => ip.startsWith("10.88.")).length;
        const expect = arm === "ref" ? pods : 0;
        if (fromRef !== expect) {
          throw new Error(`${arm} round ${r}: ${fromRef} of ${pods} pods got reference addresses`);
        }
        arms[arm]!.times.push(...b.times);
        arms[arm]!.totals.push(b.total);
        note(`kube: round ${r + 1} ${arm}: ${pods} pods Ready in ${ms(b.total)} ms`);
      }
    }
    await useRef(false);
    const o = summarize(arms.ohno!.times);
    const f = summarize(arms.ref!.times);
    const ot = summarize(arms.ohno!.totals);
    const ft = summarize(arms.ref!.totals);
    printTable(
      `pod create → Ready, ${pods} pods at once on one node, ${rounds} rounds each, alternating (ms)`,
      ["conflist", "per pod p50", "p90", "p99", "batch p50"],
      [
        ["ohno (agent + etcd)", ms(o.p50), ms(o.p90), ms(o.p99), ms(ot.p50)],
        ["bridge + host-local", ms(f.p50), ms(f.p90), ms(f.p99), ms(ft.p50)],
        [
          "ratio ohno/reference",
          ratio(o.p50, f.p50),
          ratio(o.p90, f.p90),
          ratio(o.p99, f.p99),
          ratio(ot.p50, ft.p50),
        ],
      ],
    );
  } finally {
    await kubeDown(name);
  }
}
