/**
 * A lab cluster with real Kubernetes (`ohno lab up --kubernetes BIN`): the lab's
 * underlay and etcd (topology.ts, lab.ts), and on it
 *
 * - the control plane in the lab namespace: kube-apiserver (TLS, service-account keys,
 *   Node and RBAC authorization) on the lab's etcd, kube-controller-manager and
 *   kube-scheduler; certificates made with openssl when the lab starts;
 * - per node, a separate "machine": the node's network namespace plus a mount namespace
 *   of its own, in which the DaemonSet's hostPath directories (`/opt/cni/bin`,
 *   `/etc/cni/net.d`, `/run/ohno`, `/var/lib/ohno`, …) and the kubelet's and containerd's
 *   are the node's own (bind mounts from `/var/lib/ohno-lab/NAME/NODE`); a containerd and
 *   a kubelet run there, with a cgroup root of the node's own;
 * - images without a registry: a pause image (tests/e2e/go/pause), a busybox test image
 *   and the ohno image, written as OCI archives and imported into every node's containerd.
 *
 * ohno itself is not started by the lab: it is installed as a user installs it
 * (`kubectl apply -f deploy/kubernetes/ohno.yaml`), see tests/e2e/.
 *
 * Nothing here touches the machine's root network namespace. The root mount namespace
 * gets the node directories under /var/lib/ohno-lab and, where a mount point is missing,
 * an empty directory (removed again at `down`); cgroups go under `ohno-e2e-NAME-NODE` in
 * every cgroup v1 controller (or the unified tree) and are removed at `down`.
 * @module
 */

import { labDir, spawnDetached, waitFor } from "./lab.ts";
import { type Lab, labDown, labUp } from "./topology.ts";
import { type CommandResult, runCommand } from "../netns/netns.ts";
import { processAlive } from "../lib/proc.ts";
import { buildImages, LAB_IMAGES } from "./kubeimages.ts";
import { kubeconfig, makePki } from "./kubepki.ts";

const NODE_ROOT = "/var/lib/ohno-lab";
const ETCD_BIN = "/usr/bin/etcd";
const SERVICE_CIDR = "10.96.0.0/16";
const APISERVER_PORT = 6443;

/** Directories every node has of its own (mount point → directory under the node's root). */
const NODE_DIRS = [
  "/opt/cni/bin",
  "/etc/cni/net.d",
  "/etc/kubernetes",
  "/run/ohno",
  "/var/lib/ohno",
  "/var/log/ohno",
  "/var/run/log",
  "/var/lib/kubelet",
  "/var/log/pods",
  "/var/log/containers",
  "/var/lib/containerd",
  "/run/containerd",
  "/run/netns",
];

export interface KubeNodeState {
  name: string;
  address4: string;
  address6: string;
  /** The process holding the node's mount namespace (the node's "machine"). */
  holder: number;
  containerd: number;
  kubelet: number;
  /** The node's own directories. */
  root: string;
  cgroup: string;
}

export interface KubeLabState {
  name: string;
  bin: string;
  server: string;
  /** The admin kubeconfig (for kubectl inside the lab namespace). */
  kubeconfig: string;
  pki: string;
  /** The lab's etcd: TLS, client certificates required (the CA is the lab's). */
  etcd: { pid: number; endpoint: string; ca: string; cert: string; key: string };
  control: { apiserver: number; controllerManager: number; scheduler: number };
  nodes: KubeNodeState[];
  /** Mount points this lab made in the root mount namespace (removed at down when empty). */
  madeDirs: string[];
}

export interface KubeLabOptions {
  name: string;
  nodes: number;
  /** Where kube-apiserver, kubelet, … and `pause` are (tests/e2e/build.sh: .cache/e2e/bin). */
  bin: string;
  /** dist/ohno: the ohno image's content. */
  ohno: string;
  say?: (line: string) => void;
}

function kubeStateFile(name: string): string {
  return `${labDir(name)}/kube.json`;
}

/** The state of a lab started with `--kubernetes`, or undefined for a plain lab. */
export function readKubeState(name: string): KubeLabState | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(kubeStateFile(name))) as KubeLabState;
  } catch {
    return undefined;
  }
}

// ---- the control plane -----------------------------------------------------------------

/** etcd in the lab namespace as a real cluster runs it: TLS, client certificates required. */
function spawnTlsEtcd(lab: Lab, dir: string, pki: string): number {
  const peer = "http://127.0.0.1:2380";
  return spawnDetached(lab.ns, ETCD_BIN, [
    ...["--name", "lab", "--data-dir", `${dir}/etcd`, "--log-level", "error"],
    ...["--listen-client-urls", `https://${lab.gateway.ipv4}:2379,https://127.0.0.1:2379`],
    ...["--advertise-client-urls", `https://${lab.gateway.ipv4}:2379`],
    ...["--cert-file", `${pki}/etcd-server.crt`, "--key-file", `${pki}/etcd-server.key`],
    ...["--client-cert-auth", "--trusted-ca-file", `${pki}/ca.crt`],
    ...["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer],
    ...["--initial-cluster", `lab=${peer}`],
  ], `${dir}/etcd.log`);
}

async function startControlPlane(lab: Lab, dir: string, bin: string, etcd: string) {
  const pki = `${dir}/pki`;
  const gw = lab.gateway.ipv4;
  const server = `https://${gw}:${APISERVER_PORT}`;
  for (const u of ["admin", "controller-manager", "scheduler"]) {
    Deno.writeTextFileSync(`${dir}/${u}.kubeconfig`, kubeconfig(pki, server, u));
  }
  const apiserver = spawnDetached(lab.ns, `${bin}/kube-apiserver`, [
    `--etcd-servers=${etcd}`,
    `--etcd-cafile=${pki}/ca.crt`,
    `--etcd-certfile=${pki}/etcd-client.crt`,
    `--etcd-keyfile=${pki}/etcd-client.key`,
    `--bind-address=0.0.0.0`,
    `--advertise-address=${gw}`,
    `--secure-port=${APISERVER_PORT}`,
    `--tls-cert-file=${pki}/apiserver.crt`,
    `--tls-private-key-file=${pki}/apiserver.key`,
    `--client-ca-file=${pki}/ca.crt`,
    `--kubelet-client-certificate=${pki}/apiserver-kubelet-client.crt`,
    `--kubelet-client-key=${pki}/apiserver-kubelet-client.key`,
    // Nodes are reached by their InternalIP: the lab has no DNS for node names.
    "--kubelet-preferred-address-types=InternalIP",
    `--service-account-issuer=https://kubernetes.default.svc`,
    `--service-account-key-file=${pki}/sa.pub`,
    `--service-account-signing-key-file=${pki}/sa.key`,
    `--service-cluster-ip-range=${SERVICE_CIDR}`,
    "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NodeRestriction",
    "--allow-privileged=true",
    "--profiling=false",
    "--v=1",
  ], `${dir}/kube-apiserver.log`);
  const admin = `${dir}/admin.kubeconfig`;
  await waitFor("kube-apiserver ready", 90_000, async () => {
    const r = await runCommand(lab.ns, "curl", {
      args: [
        "-s",
        "--max-time",
        "2",
        "--cacert",
        `${pki}/ca.crt`,
        "--cert",
        `${pki}/admin.crt`,
        "--key",
        `${pki}/admin.key`,
        `${server}/readyz`,
      ],
    });
    return r.stdout.trim() === "ok";
  });
  const controllerManager = spawnDetached(lab.ns, `${bin}/kube-controller-manager`, [
    `--kubeconfig=${dir}/controller-manager.kubeconfig`,
    `--authentication-kubeconfig=${dir}/controller-manager.kubeconfig`,
    `--authorization-kubeconfig=${dir}/controller-manager.kubeconfig`,
    `--service-account-private-key-file=${pki}/sa.key`,
    `--root-ca-file=${pki}/ca.crt`,
    "--use-service-account-credentials=true",
    "--leader-elect=false",
    "--bind-address=127.0.0.1",
    // Deleted nodes' pods go at once, and a silent node is noticed in seconds, not minutes.
    "--node-monitor-grace-period=20s",
    "--terminated-pod-gc-threshold=10",
    "--v=1",
  ], `${dir}/kube-controller-manager.log`);
  const scheduler = spawnDetached(lab.ns, `${bin}/kube-scheduler`, [
    `--kubeconfig=${dir}/scheduler.kubeconfig`,
    `--authentication-kubeconfig=${dir}/scheduler.kubeconfig`,
    `--authorization-kubeconfig=${dir}/scheduler.kubeconfig`,
    "--leader-elect=false",
    "--bind-address=127.0.0.1",
    "--v=1",
  ], `${dir}/kube-scheduler.log`);
  return { server, admin, pki, control: { apiserver, controllerManager, scheduler } };
}

// ---- nodes -----------------------------------------------------------------------------

const CGROUP_FS = "/sys/fs/cgroup";

/** The cgroup hierarchies a node's cgroup root is made in (v1 controllers, or v2's one). */
function cgroupHierarchies(): string[] {
  try {
    Deno.statSync(`${CGROUP_FS}/cgroup.controllers`);
    return [CGROUP_FS];
  } catch {
    return [...Deno.readDirSync(CGROUP_FS)]
      .filter((e) => e.isDirectory && e.name !== "unified")
      .map((e) => `${CGROUP_FS}/${e.name}`);
  }
}

function makeCgroup(name: string): void {
  for (const h of cgroupHierarchies()) {
    const d = `${h}/${name}`;
    Deno.mkdirSync(d, { recursive: true });
    if (h.endsWith("/cpuset")) {
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        Deno.writeTextFileSync(`${d}/${f}`, Deno.readTextFileSync(`${h}/${f}`));
      }
    }
  }
}

function cgroupProcs(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string) => {
    try {
      for (const l of Deno.readTextFileSync(`${d}/cgroup.procs`).split("\n")) if (l) pids.push(+l);
      for (const e of Deno.readDirSync(d)) if (e.isDirectory) walk(`${d}/${e.name}`);
    } catch {
      // gone
    }
  };
  walk(dir);
  return pids;
}

function removeCgroupTree(dir: string): void {
  try {
    for (const e of Deno.readDirSync(dir)) if (e.isDirectory) removeCgroupTree(`${dir}/${e.name}`);
    Deno.removeSync(dir);
  } catch {
    // gone, or still busy: reported by down's caller through the leftover check
  }
}

/** containerd in a node: its paths are the node's own (bound over the shared ones). */
function containerdConfig(): string {
  return `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "/run/containerd/containerd.sock"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${LAB_IMAGES.pause}"
  enable_selinux = false
  # Pods' oom_score_adj no lower than containerd's own: lowering it needs CAP_SYS_RESOURCE,
  # which a machine that is itself a container may not have (runc then fails to start).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`;
}

function kubeletConfig(cgroup: string, pki: string, resolv: string): string {
  return JSON.stringify(
    {
      apiVersion: "kubelet.config.k8s.io/v1beta1",
      kind: "KubeletConfiguration",
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: false },
        x509: { clientCAFile: `${pki}/ca.crt` },
      },
      authorization: { mode: "AlwaysAllow" },
      cgroupDriver: "cgroupfs",
      cgroupRoot: `/${cgroup}`,
      cgroupsPerQOS: true,
      enforceNodeAllocatable: [],
      failSwapOn: false,
      containerRuntimeEndpoint: "unix:///run/containerd/containerd.sock",
      // The lab's nodes share one disk and one memory: no evictions for the host's state.
      evictionHard: {
        "memory.available": "0%",
        "nodefs.available": "0%",
        "imagefs.available": "0%",
      },
      imageGCHighThresholdPercent: 100,
      localStorageCapacityIsolation: false,
      resolvConf: resolv,
      healthzBindAddress: "127.0.0.1",
      readOnlyPort: 0,
      serializeImagePulls: false,
      nodeStatusUpdateFrequency: "4s",
      syncFrequency: "10s",
      fileCheckFrequency: "10s",
      shutdownGracePeriod: "0s",
    },
    null,
    2,
  );
}

/**
 * Starts node `n`: its mount namespace (a holder process in the node's network namespace
 * with the node's directories bound over the shared ones), containerd and the kubelet.
 */
export async function startNode(
  lab: Lab,
  name: string,
  n: number,
  o: { bin: string; pki: string; dir: string; server: string },
): Promise<KubeNodeState> {
  const host = lab.nodes[n]!;
  const root = `${NODE_ROOT}/${name}/${host.name}`;
  const cgroup = `ohno-e2e-${name}-${host.name}`;
  const binds: string[] = [];
  for (const m of NODE_DIRS) {
    Deno.mkdirSync(`${root}${m}`, { recursive: true });
    binds.push(`mount --bind '${root}${m}' '${m}'`);
  }
  // The reference plugins, for the reference conflist and cnitool.
  for (const e of Deno.readDirSync("/usr/lib/cni")) {
    Deno.copyFileSync(`/usr/lib/cni/${e.name}`, `${root}/opt/cni/bin/${e.name}`);
    Deno.chmodSync(`${root}/opt/cni/bin/${e.name}`, 0o755);
  }
  const etcK = `${root}/etc/kubernetes`;
  Deno.writeTextFileSync(
    `${etcK}/kubelet.kubeconfig`,
    kubeconfig(o.pki, o.server, `kubelet-${host.name}`),
  );
  Deno.writeTextFileSync(`${etcK}/resolv.conf`, "nameserver 127.0.0.53\n");
  Deno.writeTextFileSync(
    `${etcK}/kubelet.json`,
    kubeletConfig(cgroup, o.pki, "/etc/kubernetes/resolv.conf"),
  );
  Deno.writeTextFileSync(`${etcK}/containerd.toml`, containerdConfig());
  makeCgroup(cgroup);

  const script = [
    "set -e",
    ...binds,
    "mount --make-rshared /var/lib/kubelet",
    // containerd's pod namespaces (bind mounts made later) reach a container that mounts
    // the directory with HostToContainer propagation (the agent doing pod work).
    "mount --make-rshared /run/netns",
    `echo ready > '${root}/.holder'`,
    "exec sleep 2147483647",
  ].join("\n");
  const holder = new Deno.Command("nsenter", {
    args: [
      `--net=${host.path}`,
      "--",
      "unshare",
      "--mount",
      "--propagation",
      "slave",
      "--",
      "/bin/sh",
      "-c",
      script,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  holder.unref();
  await waitFor(`node ${host.name}'s mount namespace`, 10_000, () => {
    try {
      return Promise.resolve(Deno.readTextFileSync(`${root}/.holder`).trim() === "ready");
    } catch {
      return Promise.resolve(false);
    }
  });
  // Without --fork, unshare execs sh itself: the spawned pid is the holder.
  const node: KubeNodeState = {
    name: host.name,
    address4: host.ipv4,
    address6: host.ipv6,
    holder: holder.pid,
    containerd: 0,
    kubelet: 0,
    root,
    cgroup,
  };
  await startNodeDaemons(node, o.bin, o.dir);
  return node;
}

/** Starts a long-running process in a node (detached, output appended to `file`). */
function spawnInNode(holder: number, cmd: string, args: string[], file: string): number {
  const c = new Deno.Command("nsenter", {
    args: [
      ...["-t", `${holder}`, "-m", "-n", "--"],
      ...["/bin/sh", "-c", 'log="$1"; shift; exec "$@" >>"$log" 2>&1', "sh", file, cmd, ...args],
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  c.unref();
  return c.pid;
}

/** containerd, then the kubelet, in node `n` (pids written into `n`). */
async function startNodeDaemons(n: KubeNodeState, bin: string, dir: string): Promise<void> {
  const log = `${dir}/${n.name}`;
  n.containerd = spawnInNode(
    n.holder,
    "containerd",
    ["--config", "/etc/kubernetes/containerd.toml"],
    `${log}-containerd.log`,
  );
  await waitFor(`node ${n.name}'s containerd`, 30_000, async () => {
    const r = await nodeRun(n.holder, "ctr", ["-a", "/run/containerd/containerd.sock", "version"]);
    return r.success;
  });
  n.kubelet = startKubelet(n, bin, dir);
}

function startKubelet(n: KubeNodeState, bin: string, dir: string): number {
  return spawnInNode(n.holder, `${bin}/kubelet`, [
    "--config=/etc/kubernetes/kubelet.json",
    "--kubeconfig=/etc/kubernetes/kubelet.kubeconfig",
    `--hostname-override=${n.name}`,
    `--node-ip=${n.address4},${n.address6}`,
    "--v=1",
  ], `${dir}/${n.name}-kubelet.log`);
}

/**
 * Stops a node's kubelet (SIGTERM; containerd and the pods keep running), for work on
 * containerd's CRI that the kubelet would otherwise undo (it removes sandboxes it did not
 * make); `kubeletStart` starts it again.
 */
export async function kubeletStop(name: string, node: string): Promise<void> {
  const { n } = kubeNode(name, node);
  kill(n.kubelet, "SIGTERM");
  await waitFor(
    `${node}'s kubelet stopped`,
    20_000,
    () => Promise.resolve(!processAlive(n.kubelet)),
  );
}

export function kubeletStart(name: string, node: string): void {
  const { s, n } = kubeNode(name, node);
  n.kubelet = startKubelet(n, s.bin, labDir(name));
  Deno.writeTextFileSync(kubeStateFile(name), JSON.stringify(s, null, 2));
}

function kubeNode(name: string, node: string): { s: KubeLabState; n: KubeNodeState } {
  const s = readKubeState(name);
  const n = s?.nodes.find((x) => x.name === node);
  if (!s || !n) throw new Error(`lab ${name} has no Kubernetes node ${node}`);
  return { s, n };
}

/**
 * A node's containerd and kubelet killed (SIGKILL, the pods' shims and processes left
 * running, as after a crash) and started again.
 */
export async function kubeNodeRestart(name: string, node: string): Promise<void> {
  const { s, n } = kubeNode(name, node);
  kill(n.kubelet);
  kill(n.containerd);
  await waitFor(
    `${node}'s kubelet and containerd gone`,
    10_000,
    () => Promise.resolve(!processAlive(n.kubelet) && !processAlive(n.containerd)),
  );
  await startNodeDaemons(n, s.bin, labDir(name));
  Deno.writeTextFileSync(kubeStateFile(name), JSON.stringify(s, null, 2));
}

/** Runs a command inside a node's mount and network namespaces. */
export function nodeRun(
  holder: number,
  cmd: string,
  args: string[],
  stdin?: string,
): Promise<CommandResult> {
  return runCommand(undefined, "nsenter", {
    args: ["-t", `${holder}`, "-m", "-n", "--", cmd, ...args],
    ...(stdin !== undefined ? { stdinText: stdin } : {}),
  });
}

export async function importImages(holder: number, images: string[], node: string): Promise<void> {
  for (const img of images) {
    const r = await nodeRun(holder, "ctr", [
      ...["-a", "/run/containerd/containerd.sock", "-n", "k8s.io", "images", "import"],
      img,
    ]);
    if (!r.success) {
      throw new Error(`importing ${img} into ${node}'s containerd: ${r.stderr.trim()}`);
    }
  }
}

/** kubectl against the lab's API server, run in the lab namespace. */
export function kubectl(name: string, args: string[], stdin?: string): Promise<CommandResult> {
  const s = readKubeState(name);
  if (!s) {
    throw new Error(
      `lab ${name} has no Kubernetes (start it with \`ohno lab up --kubernetes BIN\`)`,
    );
  }
  return runCommand(undefined, "nsenter", {
    args: [
      `--net=/run/netns/ohno-lab-${name}`,
      "--",
      `${s.bin}/kubectl`,
      `--kubeconfig=${s.kubeconfig}`,
      // Its discovery cache in the lab, not in the machine's ~/.kube.
      `--cache-dir=${labDir(name)}/kubectl-cache`,
      ...args,
    ],
    ...(stdin !== undefined ? { stdinText: stdin } : {}),
  });
}

/**
 * Builds a lab with real Kubernetes: underlay, etcd, the control plane and `nodes`
 * machines with containerd and a kubelet, every image imported; waits until every node
 * has registered. ohno is not installed (the nodes stay NotReady until it is).
 */
export async function kubeUp(o: KubeLabOptions): Promise<KubeLabState> {
  const say = o.say ?? (() => {});
  const dir = labDir(o.name);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  Deno.mkdirSync(dir, { recursive: true });
  const lab = await labUp({ name: o.name, nodes: o.nodes });
  const state: KubeLabState = {
    name: o.name,
    bin: o.bin,
    server: "",
    kubeconfig: `${dir}/admin.kubeconfig`,
    pki: `${dir}/pki`,
    etcd: {
      pid: 0,
      endpoint: `https://${lab.gateway.ipv4}:2379`,
      ca: `${dir}/pki/ca.crt`,
      cert: `${dir}/pki/etcd-client.crt`,
      key: `${dir}/pki/etcd-client.key`,
    },
    control: { apiserver: 0, controllerManager: 0, scheduler: 0 },
    nodes: [],
    madeDirs: [],
  };
  const save = () => Deno.writeTextFileSync(kubeStateFile(o.name), JSON.stringify(state, null, 2));
  try {
    save();
    const t0 = performance.now();
    const images = buildImages(dir, o.bin, o.ohno);
    await makePki(state.pki, lab.gateway.ipv4, lab.nodes.map((n) => n.name));
    state.etcd.pid = spawnTlsEtcd(lab, dir, state.pki);
    save();
    const tls = ["--cacert", state.etcd.ca, "--cert", state.etcd.cert, "--key", state.etcd.key];
    await waitFor("etcd answering", 20_000, async () => {
      const r = await runCommand(lab.ns, "curl", {
        args: ["-s", "--max-time", "1", ...tls, "https://127.0.0.1:2379/health"],
      });
      return r.stdout.includes("true");
    });
    const cp = await startControlPlane(lab, dir, o.bin, "https://127.0.0.1:2379");
    state.server = cp.server;
    state.control = cp.control;
    save();
    say(`control plane: ${cp.server} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    const archives = await images;
    // Mount points the nodes' directories are bound over, made where missing (and
    // recorded first, so that down removes them whatever happens next).
    for (const m of NODE_DIRS) {
      if (exists(m)) continue;
      state.madeDirs.push(m);
      save();
      Deno.mkdirSync(m, { recursive: true });
    }
    for (let i = 0; i < o.nodes; i++) {
      const node = await startNode(lab, o.name, i, {
        bin: o.bin,
        pki: state.pki,
        dir,
        server: cp.server,
      });
      state.nodes.push(node);
      save();
      await importImages(node.holder, archives, node.name);
      say(`${node.name}: containerd and kubelet up, images imported`);
    }
    // The API server's address for agents that cannot use the service IP before a
    // service proxy exists (Calico's convention: optional in the DaemonSet's envFrom).
    const cm = JSON.stringify({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "kubernetes-services-endpoint", namespace: "kube-system" },
      data: {
        KUBERNETES_SERVICE_HOST: lab.gateway.ipv4,
        KUBERNETES_SERVICE_PORT: `${APISERVER_PORT}`,
      },
    });
    const applied = await kubectl(o.name, ["apply", "-f", "-"], cm);
    if (!applied.success) throw new Error(`kubernetes-services-endpoint: ${applied.stderr}`);
    await waitFor("every node registered", 60_000, async () => {
      const r = await kubectl(o.name, ["get", "nodes", "-o", "name"]);
      return r.success && state.nodes.every((n) => r.stdout.includes(`node/${n.name}`));
    });
    say(`${o.nodes} nodes registered (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    return state;
  } catch (e) {
    lab.close();
    await kubeDown(o.name).catch(() => {});
    throw e;
  } finally {
    lab.close();
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function kill(pid: number, sig: Deno.Signal = "SIGKILL"): void {
  // 0 (not started yet) would signal this process's own group.
  if (!(pid > 1)) return;
  try {
    Deno.kill(pid, sig);
  } catch {
    // gone
  }
}

function mountNs(pid: number): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** Every process whose mount namespace is `ns` (a node's, with containerd's shims). */
function processesInMountNs(ns: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    if (mountNs(+e.name) === ns) pids.push(+e.name);
  }
  return pids;
}

/**
 * Takes a Kubernetes lab down: every node's processes (kubelet, containerd, its shims and
 * the pods' processes, found by mount namespace and cgroup), the control plane, etcd, the
 * cgroups, the node directories, the mount points it made and the namespaces.
 */
export async function kubeDown(name: string): Promise<string[]> {
  const s = readKubeState(name);
  if (s) {
    for (const n of s.nodes) {
      kill(n.kubelet);
      const ns = mountNs(n.holder);
      for (let round = 0; round < 5; round++) {
        const pids = [
          ...(ns ? processesInMountNs(ns) : []),
          ...cgroupHierarchies().flatMap((h) => cgroupProcs(`${h}/${n.cgroup}`)),
        ].filter((p) => p !== Deno.pid);
        if (!pids.length) break;
        for (const p of pids) kill(p);
        await new Promise((r) => setTimeout(r, 200));
      }
      kill(n.holder);
    }
    for (
      const pid of [
        s.control.apiserver,
        s.control.controllerManager,
        s.control.scheduler,
        s.etcd.pid,
      ]
    ) kill(pid);
    await new Promise((r) => setTimeout(r, 300));
    for (const n of s.nodes) {
      // Every hierarchy, the hybrid layout's unified one too: the kubelet makes its root there.
      for (const e of Deno.readDirSync(CGROUP_FS)) {
        if (e.isDirectory) removeCgroupTree(`${CGROUP_FS}/${e.name}/${n.cgroup}`);
      }
      removeCgroupTree(`${CGROUP_FS}/${n.cgroup}`);
    }
    await Deno.remove(`${NODE_ROOT}/${name}`, { recursive: true }).catch(() => {});
    await Deno.remove(NODE_ROOT).catch(() => {}); // when no other lab has nodes there
    for (const d of [...s.madeDirs].reverse()) {
      try {
        Deno.removeSync(d);
      } catch {
        // not empty (someone else's now) or gone
      }
    }
  }
  const removed = await labDown(name);
  await Deno.remove(labDir(name), { recursive: true }).catch(() => {});
  return removed;
}
