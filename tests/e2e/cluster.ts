/**
 * What the e2e tests and the Kubernetes bench share: kubectl, ohno installed from its
 * manifest as a user installs it, pods, pings, `ohno ipam` against the lab's etcd.
 * @module
 */

import { parseAllDocuments } from "yaml";
import { kubectl, type KubeLabState } from "../../lab/kube.ts";
import { LAB_IMAGES } from "../../lab/kubeimages.ts";
import { OHNO, REPO } from "../support/ohno.ts";
import { within } from "../support/wait.ts";

/** Where tests/e2e/build.sh puts the programs. */
export const BIN = Deno.env.get("OHNO_E2E_BIN") ?? `${REPO}/.cache/e2e/bin`;
export const MANIFEST = `${REPO}/deploy/kubernetes/ohno.yaml`;

/** The programs the e2e lab needs that are not built yet. */
export function missingPrograms(): string[] {
  const want = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
  ];
  return [...want, "cnitool", "crictl", "pause"].filter((b) => {
    try {
      Deno.statSync(`${BIN}/${b}`);
      return false;
    } catch {
      return true;
    }
  });
}
export async function k(name: string, args: string[], stdin?: string): Promise<string> {
  const r = await kubectl(name, args, stdin);
  if (!r.success) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

export async function kjson<T = Record<string, unknown>>(name: string, args: string[]): Promise<T> {
  return JSON.parse(await k(name, [...args, "-o", "json"])) as T;
}

export interface Item {
  metadata: { name: string; uid?: string; labels?: Record<string, string> };
  spec?: { nodeName?: string };
  status?: {
    phase?: string;
    podIPs?: { ip: string }[];
    conditions?: { type: string; status: string; reason?: string }[];
    numberReady?: number;
    desiredNumberScheduled?: number;
    updatedNumberScheduled?: number;
  };
}

/** The manifest as a user adjusts it: the ConfigMap's etcd endpoints are the lab's. */
export function manifestFor(s: KubeLabState): string {
  const docs = parseAllDocuments(Deno.readTextFileSync(MANIFEST)).map((d) => d.toJS());
  for (const d of docs) {
    if (d?.kind === "ConfigMap" && d.metadata?.name === "ohno") {
      const cfg = JSON.parse(d.data["ohno.json"]);
      cfg.datastore.etcd.endpoints = [s.etcd.endpoint];
      d.data["ohno.json"] = JSON.stringify(cfg, null, 2);
    }
  }
  return docs.map((d) => JSON.stringify(d)).join("\n---\n");
}

/** `ohno ipam …` against the lab's etcd, run in the lab namespace. */
export async function ipam(s: KubeLabState, args: string[]): Promise<string> {
  const c = await new Deno.Command("nsenter", {
    args: [
      `--net=/run/netns/ohno-lab-${s.name}`,
      "--",
      OHNO,
      "ipam",
      ...["--etcd-endpoints", s.etcd.endpoint, "--etcd-ca", s.etcd.ca],
      ...["--etcd-cert", s.etcd.cert, "--etcd-key", s.etcd.key],
      ...args,
    ],
    stdin: "null",
  }).output();
  const out = new TextDecoder().decode(c.stdout);
  if (!c.success) {
    throw new Error(
      `ohno ipam ${args.join(" ")}: exit ${c.code}: ${new TextDecoder().decode(c.stderr)}${out}`,
    );
  }
  return out;
}

export async function allocations(
  s: KubeLabState,
): Promise<{ ip: string; node: string; podName?: string; containerID: string }[]> {
  return JSON.parse(await ipam(s, ["ls", "-o", "json"]));
}

export function podSpec(name: string, node: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { app: "e2e" } },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 1,
      automountServiceAccountToken: false,
      containers: [{ name: "c", image: LAB_IMAGES.busybox, imagePullPolicy: "Never" }],
    },
  });
}

export async function podIPs(name: string): Promise<Map<string, string[]>> {
  const list = await kjson<{ items: Item[] }>(name, ["get", "pods", "-l", "app=e2e"]);
  return new Map(
    list.items.map((p) => [p.metadata.name, (p.status?.podIPs ?? []).map((i) => i.ip)]),
  );
}

/** From inside pod `from`, one ping to each address; returns the failures. */
export async function pingFrom(name: string, from: string, ips: string[]): Promise<string[]> {
  const script = ips.map((ip) => `ping -c1 -W3 ${ip} >/dev/null 2>&1 || echo FAIL ${ip}`).join(
    "; ",
  );
  const r = await kubectl(name, ["exec", from, "--", "sh", "-c", script]);
  if (!r.success) return [`${from}: kubectl exec failed: ${r.stderr.trim().slice(0, 300)}`];
  return r.stdout.split("\n").filter((l) => l.startsWith("FAIL")).map((l) =>
    `${from} → ${l.slice(5)}`
  );
}

export async function pingMesh(name: string): Promise<string[]> {
  const ips = await podIPs(name);
  const failures: string[] = [];
  for (const [pod] of ips) {
    const others = [...ips].filter(([p]) => p !== pod).flatMap(([, a]) => a);
    failures.push(...await pingFrom(name, pod, others));
  }
  return failures;
}

export async function nodeReady(name: string, node: string): Promise<boolean> {
  const n = await kjson<Item>(name, ["get", "node", node]);
  const c = (t: string) => n.status?.conditions?.find((x) => x.type === t)?.status;
  return c("Ready") === "True" && c("NetworkUnavailable") === "False";
}

export async function dsSettled(name: string): Promise<boolean> {
  const ds = await kjson<Item>(name, ["-n", "kube-system", "get", "ds", "ohno"]);
  const st = ds.status ?? {};
  return !!st.desiredNumberScheduled && st.numberReady === st.desiredNumberScheduled &&
    st.updatedNumberScheduled === st.desiredNumberScheduled;
}

export async function allPodsRunning(name: string, n: number): Promise<boolean> {
  const ips = await podIPs(name);
  return ips.size === n && [...ips.values()].every((a) => a.length === 2);
}

/** `kubectl apply` of the manifest (its ConfigMap pointed at the lab's etcd); waits until the DaemonSet is ready on every node. */
export async function installOhno(s: KubeLabState): Promise<void> {
  // As the manifest's header says: the etcd client pair as the Secret ohno-etcd, first.
  await k(s.name, [
    ...["-n", "kube-system", "create", "secret", "generic", "ohno-etcd"],
    `--from-file=ca.crt=${s.etcd.ca}`,
    `--from-file=tls.crt=${s.etcd.cert}`,
    `--from-file=tls.key=${s.etcd.key}`,
  ]);
  await k(s.name, ["apply", "-f", "-"], manifestFor(s));
  await within(300_000, "the DaemonSet ready on every node", () => dsSettled(s.name));
}
