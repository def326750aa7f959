/**
 * deploy/kubernetes/ohno.yaml, read as Kubernetes reads it: what the e2e cluster
 * (tests/e2e/) proved enough is what the file says, and its config is one the agent
 * accepts. Catches a manifest change without a cluster.
 */
import { parseAllDocuments } from "yaml";
import { assert, assertEquals } from "./support/assert.ts";
import { REPO } from "./support/ohno.ts";
import { loadDaemonConfig } from "../daemon/config.ts";

// YAML documents, walked by the shapes Kubernetes gives them.
// deno-lint-ignore no-explicit-any
type Doc = Record<string, any>;

const docs = parseAllDocuments(Deno.readTextFileSync(`${REPO}/deploy/kubernetes/ohno.yaml`))
  .map((d) => d.toJS() as Doc);
const find = (kind: string, name: string) =>
  docs.find((d) => d.kind === kind && d.metadata?.name === name);

Deno.test("manifest: RBAC grants exactly the verbs the agent's client uses", () => {
  const role = find("ClusterRole", "ohno")!;
  const rules = (role.rules as { resources: string[]; verbs: string[] }[])
    .flatMap((r) => r.resources.map((res) => `${res}: ${[...r.verbs].sort().join(",")}`))
    .sort();
  assertEquals(rules, [
    "events: create",
    "nodes/status: patch",
    "nodes: get,list,watch",
    "pods: get,list",
  ]);
  const binding = find("ClusterRoleBinding", "ohno")!;
  assertEquals(binding.subjects, [{
    kind: "ServiceAccount",
    name: "ohno",
    namespace: "kube-system",
  }]);
  assert(find("ServiceAccount", "ohno"), "the ServiceAccount exists");
});

Deno.test("manifest: the DaemonSet runs on every Linux node, unprivileged with three capabilities", () => {
  const ds = find("DaemonSet", "ohno")!;
  const pod = ds.spec.template.spec;
  assertEquals(pod.nodeSelector, { "kubernetes.io/os": "linux" });
  assertEquals(pod.tolerations, [{ operator: "Exists" }]);
  assertEquals(pod.hostNetwork, true);
  const c = pod.containers[0];
  assertEquals(c.securityContext.privileged, false);
  assertEquals([...c.securityContext.capabilities.add].sort(), [
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_RAW",
  ]);
  assert(c.resources?.requests?.cpu && c.resources?.requests?.memory, "resource requests");
  assertEquals(c.envFrom, [
    { configMapRef: { name: "kubernetes-services-endpoint", optional: true } },
  ]);
  // Every volume the container mounts exists; the etcd pair is the optional Secret.
  const volumes = new Map((pod.volumes as Doc[]).map((v) => [v.name, v]));
  for (const m of c.volumeMounts as { name: string }[]) assert(volumes.has(m.name), m.name);
  assertEquals(volumes.get("etcd-tls")!.secret, { secretName: "ohno-etcd", optional: true });
  assertEquals(volumes.get("config")!.configMap, { name: "ohno" });
  assert(find("ConfigMap", "ohno"), "the ConfigMap the DaemonSet mounts is in the file");
});

Deno.test("manifest: the ConfigMap's ohno.json is a configuration the agent accepts", () => {
  const cm = find("ConfigMap", "ohno")!;
  const dir = Deno.makeTempDirSync({ prefix: "ohnot-manifest-" });
  try {
    Deno.writeTextFileSync(`${dir}/ohno.json`, cm.data["ohno.json"]);
    const cfg = loadDaemonConfig({
      flags: { config: `${dir}/ohno.json` },
      env: (k) => ({ NODE_NAME: "node1" } as Record<string, string>)[k],
    });
    assertEquals(cfg.datastore.type, "etcd");
    // The client pair is read from where the DaemonSet mounts the Secret.
    const mount = (find("DaemonSet", "ohno")!.spec.template.spec.containers[0].volumeMounts as {
      name: string;
      mountPath: string;
    }[]).find((m) => m.name === "etcd-tls")!.mountPath;
    for (const f of [cfg.datastore.etcd!.ca, cfg.datastore.etcd!.cert, cfg.datastore.etcd!.key]) {
      assert(f?.startsWith(`${mount}/`), `${f} under ${mount}`);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
