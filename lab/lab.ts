/**
 * `ohno lab`: a cluster on one machine. On the underlay of topology.ts it runs etcd in
 * the lab namespace and an `ohno daemon` in every node namespace (each with its own CNI
 * dirs, socket, state and logs under /run/ohno-lab/NAME), and wires pods exactly as a
 * runtime would: a namespace per pod, the node's installed plugin and conflist run with
 * CNI_* in the node's namespace. It never touches the machine's root namespace; the lab
 * has no route to the real network.
 * @module
 */

import { ipJson, type IpRoute } from "../netns/ip.ts";
import { createNamedNetns, deleteNamedNetns } from "../netns/manage.ts";
import { Netns, runCommand } from "../netns/netns.ts";
import { OHNO_ROUTE_PROTOCOL } from "../daemon/routing/hostgw.ts";
import { type BgpSession, BIRD_ROUTE_PROTOCOL } from "../daemon/routing/bird.ts";
import { bgpStatus, LAB_ROUTER_AS, startLabRouter } from "./bgprouter.ts";
import { processAlive } from "../lib/proc.ts";
import { CniRuntime, type ConfList } from "./runtime.ts";
import { type Lab, labDown, labNetnsName, labOpen, type LabUnderlay, labUp } from "./topology.ts";

const LAB_STATE_ROOT = "/run/ohno-lab";
const LAB_POOLS = ["10.244.0.0/16", "fd00:10:244::/48"];
const ETCD_BIN = "/usr/bin/etcd";
const POD_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;

export interface PodState {
  name: string;
  node: string;
  netns: string;
  containerID: string;
  ifname: string;
  ips: string[];
  result: Record<string, unknown>;
}

/** A pod as lab.json stores it: the container ID under its stored name `containerId`. */
type StoredPod = Omit<PodState, "containerID"> & { containerId: string };

/** lab.json's text of a state (pods mapped to their stored shape). */
function stateText(s: LabState): string {
  const pods: Record<string, StoredPod> = {};
  for (const [k, p] of Object.entries(s.pods)) {
    const { name, node, netns, containerID, ifname, ips, result } = p;
    pods[k] = { name, node, netns, containerId: containerID, ifname, ips, result };
  }
  return JSON.stringify({ ...s, pods }, null, 2);
}

/** The state in lab.json's text. */
function parseState(text: string): LabState {
  const s = JSON.parse(text) as Omit<LabState, "pods"> & { pods: Record<string, StoredPod> };
  const pods: Record<string, PodState> = {};
  for (const [k, p] of Object.entries(s.pods)) {
    const { containerId, ...rest } = p;
    pods[k] = { ...rest, containerID: containerId };
  }
  return { ...s, pods };
}

export interface LabState {
  name: string;
  ohno: string;
  etcd: { pid: number; endpoint: string };
  /** `flat` or `routed` (absent in labs made before routed ones existed: flat). */
  underlay?: LabUnderlay;
  /** The router's BGP speaker (`--bgp-router`): its pid, or 0 for a silent router. */
  bgpRouter?: { pid: number };
  nodes: {
    name: string;
    pid: number;
    dir: string;
    ipv4: string;
    ipv6: string;
    /** The node's underlay subnet (0 on a flat underlay). */
    subnet?: number;
  }[];
  pods: Record<string, PodState>;
}

export interface LabUpOptions {
  name: string;
  nodes: number;
  /** The ohno binary the agents run (dist/ohno). */
  ohno: string;
  /** Full route reconcile period of the agents (default 30s). */
  resyncPeriod?: string;
  /** MTU of the underlay links (default 1500); the agents derive the pods' MTU from it. */
  mtu?: number;
  /** `flat` (default: one L2 segment) or `routed` (nodes in subnets joined by a router). */
  underlay?: LabUnderlay;
  /** Subnets of a routed underlay (default 2). */
  subnets?: number;
  /**
   * The node addresses the agents use (`dual`, default, or `ipv6`: an IPv6-only underlay
   * as far as ohno is concerned; the links keep their IPv4 addresses, which reach etcd).
   */
  nodeFamilies?: "dual" | "ipv6";
  /**
   * A kubeconfig for the agents: Kubernetes on, node addresses from the Nodes'
   * InternalIPs (the API server must be reachable from the nodes, e.g. in the lab namespace).
   */
  kubeconfig?: string;
  /** More agent configuration (docs/daemon.md keys), merged over the lab's. */
  extraConfig?: Record<string, unknown>;
  /** More configuration for single nodes, by node name, merged over extraConfig. */
  nodeConfig?: Record<string, Record<string, unknown>>;
  /**
   * A routed underlay's router as a BGP top-of-rack peer (bgprouter.ts): `bird` runs BIRD
   * there (AS 65000), `silent` speaks no BGP; either way every node gets the router's
   * address on its subnet as a global peer (`bgpPeers`).
   */
  bgpRouter?: "bird" | "silent";
  say?: (line: string) => void;
}

export function labDir(name: string): string {
  return `${LAB_STATE_ROOT}/${name}`;
}

function stateFile(name: string) {
  return `${labDir(name)}/lab.json`;
}

export function readState(name: string): LabState {
  try {
    return parseState(Deno.readTextFileSync(stateFile(name)));
  } catch {
    throw new Error(`lab ${name} is not up (no ${stateFile(name)}); start it with \`ohno lab up\``);
  }
}

/** Updates the state under a lock (pod add/del may run at once). */
async function updateState<T>(name: string, fn: (s: LabState) => T): Promise<T> {
  const lock = await Deno.open(`${labDir(name)}/lab.lock`, { create: true, write: true });
  try {
    await lock.lock(true);
    const s = readState(name);
    const out = fn(s);
    const tmp = `${stateFile(name)}.tmp-${Deno.pid}`;
    Deno.writeTextFileSync(tmp, stateText(s));
    Deno.renameSync(tmp, stateFile(name));
    return out;
  } finally {
    lock.close();
  }
}

export async function waitFor(what: string, ms: number, ok: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not happen within ${ms / 1000} s`);
}

/**
 * Starts a long-running process inside `ns`, detached from this one (its own process
 * group, output appended to `log`, so it outlives the `ohno lab` command); returns its pid.
 */
export function spawnDetached(ns: Netns, cmd: string, args: string[], log: string): number {
  const child = ns.run(() =>
    new Deno.Command("/bin/sh", {
      args: ["-c", 'log="$1"; shift; exec "$@" >>"$log" 2>&1', "sh", log, cmd, ...args],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true,
    }).spawn()
  );
  child.unref();
  return child.pid;
}

/** etcd in the lab namespace, on the underlay gateway and loopback; data in `dir/etcd`. */
function spawnEtcd(ns: Netns, dir: string, endpoint: string): number {
  const peer = "http://127.0.0.1:2380";
  return spawnDetached(ns, ETCD_BIN, [
    ...["--name", "lab", "--data-dir", `${dir}/etcd`, "--log-level", "error"],
    ...["--listen-client-urls", `${endpoint},http://127.0.0.1:2379`],
    ...["--advertise-client-urls", endpoint],
    ...["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer],
    ...["--initial-cluster", `lab=${peer}`],
  ], `${dir}/etcd.log`);
}

async function curlOk(ns: Netns, url: string): Promise<boolean> {
  const r = await runCommand(ns, "curl", {
    args: ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", url],
  });
  return r.stdout.trim() === "200";
}

/** Builds lab `name`: underlay, etcd, one agent per node; waits until every agent is ready. */
export async function up(o: LabUpOptions): Promise<LabState> {
  const say = o.say ?? (() => {});
  const dir = labDir(o.name);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  Deno.mkdirSync(dir, { recursive: true });
  const lab = await labUp({
    name: o.name,
    nodes: o.nodes,
    ...(o.mtu ? { mtu: o.mtu } : {}),
    ...(o.underlay ? { underlay: o.underlay } : {}),
    ...(o.subnets ? { subnets: o.subnets } : {}),
  });
  try {
    sayUnderlay(lab, o.nodes, say);
    // etcd in the lab namespace, on the underlay's gateway address.
    const endpoint = `http://${lab.gateway.ipv4}:2379`;
    const etcdPid = spawnEtcd(lab.ns, dir, endpoint);
    await waitFor("etcd answering", 20_000, () => curlOk(lab.ns, "http://127.0.0.1:2379/health"));
    say(`etcd: ${endpoint} (pid ${etcdPid})`);
    const routerPid = await startRouter(lab, dir, o, say);
    const nodes = startAgents(lab, dir, endpoint, o);
    await waitUnderlay(lab);
    const state: LabState = {
      name: o.name,
      ohno: o.ohno,
      etcd: { pid: etcdPid, endpoint },
      underlay: lab.underlay,
      ...(routerPid !== undefined ? { bgpRouter: { pid: routerPid } } : {}),
      nodes,
      pods: {},
    };
    Deno.writeTextFileSync(stateFile(o.name), stateText(state));
    await waitAgentsReady(lab, nodes, say);
    await waitRoutes(lab, nodes, o, say);
    return state;
  } catch (e) {
    lab.close();
    await down(o.name).catch(() => {});
    throw e;
  } finally {
    lab.close();
  }
}

/** `up`'s first line: the underlay. */
function sayUnderlay(lab: Lab, nodes: number, say: (line: string) => void): void {
  if (lab.underlay === "routed") {
    say(
      `underlay: routed, ${lab.netns} forwards between ${
        lab.subnets.map((s) => `${s.bridge} ${s.cidr4} ${s.cidr6}`).join(", ")
      }; ${nodes} nodes, an outside host`,
    );
  } else {
    say(
      `underlay: ${lab.netns} (bridge ${lab.bridge} ${lab.gateway.ipv4}, ${lab.gateway.ipv6}), ${nodes} nodes, an outside host`,
    );
  }
}

/** The BGP router of `o.bgpRouter`, if any: its pid (0 for a silent one). */
async function startRouter(
  lab: Lab,
  dir: string,
  o: LabUpOptions,
  say: (line: string) => void,
): Promise<number | undefined> {
  let routerPid: number | undefined;
  if (o.bgpRouter) {
    if (lab.underlay !== "routed") throw new Error("a BGP router needs a routed underlay");
    routerPid = o.bgpRouter === "bird"
      ? await startLabRouter(lab.ns, dir, {
        routerId: lab.gateway.ipv4,
        underlay4: lab.underlay4,
        underlay6: lab.underlay6,
      })
      : 0;
    say(
      o.bgpRouter === "bird"
        ? `router: BIRD, AS ${LAB_ROUTER_AS}, peers with every node (pid ${routerPid})`
        : "router: speaks no BGP",
    );
  }
  return routerPid;
}

/** Writes each node's agent configuration and starts its agent. */
function startAgents(
  lab: Lab,
  dir: string,
  endpoint: string,
  o: LabUpOptions,
): LabState["nodes"] {
  const nodes: LabState["nodes"] = [];
  for (const n of lab.nodes) {
    const nd = `${dir}/${n.name}`;
    Deno.mkdirSync(nd, { recursive: true });
    const config = agentConfig(lab, n, nd, endpoint, o);
    Deno.writeTextFileSync(`${nd}/ohno.json`, JSON.stringify(config, null, 2));
    const pid = spawnDetached(
      n.ns,
      o.ohno,
      ["daemon", "--config", `${nd}/ohno.json`],
      `${nd}/daemon.out`,
    );
    nodes.push({ name: n.name, pid, dir: nd, ipv4: n.ipv4, ipv6: n.ipv6, subnet: n.subnet });
  }
  return nodes;
}

/** The agent configuration of node `n` (its files under `nd`). */
function agentConfig(
  lab: Lab,
  n: Lab["nodes"][number],
  nd: string,
  endpoint: string,
  o: LabUpOptions,
): Record<string, unknown> {
  return {
    nodeName: n.name,
    nodeIP: o.kubeconfig ? { source: "kubernetes" } : {
      source: "addresses",
      addresses: o.nodeFamilies === "ipv6" ? [n.ipv6] : [n.ipv4, n.ipv6],
    },
    pools: LAB_POOLS.map((cidr) => ({ cidr })),
    datastore: { type: "etcd", etcd: { endpoints: [endpoint] } },
    kubernetes: o.kubeconfig ? { enabled: "on", kubeconfig: o.kubeconfig } : { enabled: "off" },
    cniBinDir: `${nd}/cni/bin`,
    // The lab's nodes share this checkout: a development launcher works on every one.
    allowLauncher: true,
    cniConfDir: `${nd}/cni/net.d`,
    runDir: `${nd}/run`,
    stateDir: `${nd}/state`,
    logFile: `${nd}/daemon.log`,
    cniLogFile: `${nd}/cni.log`,
    ...(o.resyncPeriod ? { resyncPeriod: o.resyncPeriod } : {}),
    metricsAddress: "127.0.0.1:9753",
    ...(o.bgpRouter
      ? {
        bgpPeers: [lab.subnets[n.subnet]!.gateway.ipv4, lab.subnets[n.subnet]!.gateway.ipv6]
          .map((address) => ({ address, asNumber: LAB_ROUTER_AS })),
      }
      : {}),
    ...o.extraConfig,
    ...o.nodeConfig?.[n.name],
  };
}

/**
 * The underlay must carry both families between every pair of nodes before pods use
 * it: each node reaches every other's addresses (this also settles neighbour
 * discovery, whose first exchange right after the links come up can take a second).
 */
async function waitUnderlay(lab: Lab): Promise<void> {
  for (const a of lab.nodes) {
    for (const b of lab.nodes) {
      if (a === b) continue;
      for (const ip of [b.ipv4, b.ipv6]) {
        await waitFor(
          `${a.name} reaching ${b.name} at ${ip} on the underlay`,
          10_000,
          async () =>
            (await runCommand(a.ns, "ping", { args: ["-c", "1", "-W", "1", ip] })).code === 0,
        );
      }
    }
  }
}

/** Waits until every agent answers `/readyz` (fails at once when one exits). */
async function waitAgentsReady(
  lab: Lab,
  nodes: LabState["nodes"],
  say: (line: string) => void,
): Promise<void> {
  for (const n of nodes) {
    await waitFor(`the agent on ${n.name} ready (see ${n.dir}/daemon.log)`, 60_000, async () => {
      if (!processAlive(n.pid)) {
        throw new Error(`the agent on ${n.name} exited:\n${tail(`${n.dir}/daemon.out`)}`);
      }
      return await curlOk(lab.node(n.name).ns, "http://127.0.0.1:9753/readyz");
    });
    say(`agent: ${n.name} ${n.ipv4} ${n.ipv6} ready (pid ${n.pid})`);
  }
}

/**
 * Ready means "my routes are programmed", but an agent that started before the others
 * claimed their blocks had no peers yet: the lab is up once every node routes to every
 * other node's blocks (one per family each). host-gw on a routed underlay can route
 * only to the nodes of the node's own subnet (the others' next hops are off-link).
 */
async function waitRoutes(
  lab: Lab,
  nodes: LabState["nodes"],
  o: LabUpOptions,
  say: (line: string) => void,
): Promise<void> {
  const backend = String(o.extraConfig?.backend ?? "host-gw");
  // bgp with neither the mesh nor a reflector nor a speaking router learns no route.
  const bgpIsolated = backend === "bgp" && o.extraConfig?.bgpNodeMesh === false &&
    o.bgpRouter !== "bird" &&
    !Object.values(o.nodeConfig ?? {}).some((c) => c.bgpRouteReflector === true);
  const reach = (a: LabState["nodes"][number]) =>
    bgpIsolated
      ? 0
      : nodes.filter((b) => b !== a && (backend !== "host-gw" || b.subnet === a.subnet)).length;
  const proto = backend === "bgp" ? BIRD_ROUTE_PROTOCOL : OHNO_ROUTE_PROTOCOL;
  for (const n of nodes) {
    const want = 2 * reach(n);
    await waitFor(
      `${n.name} routing to the other nodes' blocks`,
      backend === "bgp" ? 60_000 : 15_000,
      async () => (await ohnoRoutes(lab.node(n.name).ns, proto)).length >= want,
    );
  }
  if (nodes.length > 1) {
    say(
      nodes.every((n) => reach(n) === nodes.length - 1)
        ? `routes: every node routes to every other node's blocks`
        : `routes: host-gw routes only within each subnet (next hops in other subnets are off-link)`,
    );
  }
}

/**
 * ohno's routes (its protocol number; the bgp backend's: BIRD's) in a node, both
 * families; not the blackholes of the node's own blocks.
 */
export async function ohnoRoutes(ns: Netns, protocol = OHNO_ROUTE_PROTOCOL): Promise<IpRoute[]> {
  const proto = String(protocol);
  const [v4, v6] = await Promise.all(
    ["-4", "-6"].map((f) => ipJson<IpRoute[]>([f, "route", "show", "proto", proto], { netns: ns })),
  );
  return [...v4!, ...v6!].filter((r) => r.type !== "blackhole");
}

function tail(file: string, lines = 20): string {
  try {
    return Deno.readTextFileSync(file).trim().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function open(name: string): { lab: Lab; state: LabState } {
  const state = readState(name);
  return { lab: labOpen(name), state };
}

/** The conflist the agent on `node` installed. */
export function nodeConflist(node: LabState["nodes"][number]): ConfList {
  const dir = `${node.dir}/cni/net.d`;
  const file =
    [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => /\.conflist$/.test(n)).sort()[0];
  if (!file) throw new Error(`no conflist in ${dir}: is the agent on ${node.name} ready?`);
  return JSON.parse(Deno.readTextFileSync(`${dir}/${file}`));
}

function runtimeFor(lab: Lab, node: LabState["nodes"][number]): CniRuntime {
  return new CniRuntime({ path: [`${node.dir}/cni/bin`], host: lab.node(node.name).ns });
}

/** Adds pod `pod` on `nodeName`, exactly as a runtime would; on failure cleans up. */
export async function podAdd(
  name: string,
  nodeName: string,
  pod: string,
  opts: { uid?: string } = {},
): Promise<PodState> {
  if (!POD_RE.test(pod)) {
    throw new Error(`pod name ${JSON.stringify(pod)} is not lowercase letters, digits and '-'`);
  }
  const { lab, state } = open(name);
  try {
    const node = state.nodes.find((n) => n.name === nodeName);
    if (!node) {
      throw new Error(
        `lab ${name} has no node ${nodeName} (nodes: ${state.nodes.map((n) => n.name).join(", ")})`,
      );
    }
    if (state.pods[pod]) throw new Error(`pod ${pod} exists already (on ${state.pods[pod]!.node})`);
    const netns = labNetnsName(name, undefined, `pod-${pod}`);
    const ns = await createNamedNetns(netns);
    ns.close();
    const a = {
      containerID: `lab-${name}-${pod}`,
      netns: `/var/run/netns/${netns}`,
      ifname: "eth0",
      args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME=${pod};K8S_POD_UID=${
        opts.uid ?? crypto.randomUUID()
      }`,
    };
    const list = nodeConflist(node);
    const rt = runtimeFor(lab, node);
    let result: Record<string, unknown>;
    try {
      result = await rt.add(list, a);
    } catch (e) {
      // As a runtime does after a failed ADD: DEL, then drop the sandbox.
      await rt.del(list, a).catch(() => {});
      await deleteNamedNetns(netns);
      throw e;
    }
    const ips = ((result.ips ?? []) as { address: string }[]).map((i) => i.address.split("/")[0]!);
    const ps: PodState = {
      name: pod,
      node: nodeName,
      netns,
      containerID: a.containerID,
      ifname: "eth0",
      ips,
      result,
    };
    await updateState(name, (s) => {
      s.pods[pod] = ps;
    });
    return ps;
  } finally {
    lab.close();
  }
}

/** Deletes a pod: DEL (with the cached result), then its namespace. */
export async function podDel(name: string, pod: string): Promise<void> {
  const { lab, state } = open(name);
  try {
    const ps = state.pods[pod];
    if (!ps) throw new Error(`lab ${name} has no pod ${pod}`);
    const node = state.nodes.find((n) => n.name === ps.node)!;
    await runtimeFor(lab, node).del(nodeConflist(node), {
      containerID: ps.containerID,
      netns: `/var/run/netns/${ps.netns}`,
      ifname: ps.ifname,
    }, ps.result);
    await deleteNamedNetns(ps.netns);
    await updateState(name, (s) => {
      delete s.pods[pod];
    });
  } finally {
    lab.close();
  }
}

export function podNetns(name: string, pod: string): string {
  const ps = readState(name).pods[pod];
  if (!ps) throw new Error(`lab ${name} has no pod ${pod}`);
  return `/var/run/netns/${ps.netns}`;
}

export interface PingResult {
  from: string;
  to: string;
  ip: string;
  ok: boolean;
  rtt?: string;
}

/** Pings every address of `to` from `from` (a pod, a node, or `outside`). */
export async function ping(name: string, from: string, to: string): Promise<PingResult[]> {
  const { lab, state } = open(name);
  try {
    const where = (who: string): { ns: Netns; ips: string[] } => {
      const p = state.pods[who];
      if (p) return { ns: Netns.named(p.netns), ips: p.ips };
      if (who === "outside") {
        return { ns: lab.outside.ns, ips: [lab.outside.ipv4, lab.outside.ipv6] };
      }
      const n = state.nodes.find((x) => x.name === who);
      if (n) return { ns: lab.node(who).ns, ips: [n.ipv4, n.ipv6] };
      throw new Error(`lab ${name} has no pod, node or host ${who}`);
    };
    const src = where(from);
    const dst = where(to);
    const out: PingResult[] = [];
    for (const ip of dst.ips) {
      const r = await runCommand(src.ns, "ping", { args: ["-c", "1", "-W", "2", ip] });
      out.push({
        from,
        to,
        ip,
        ok: r.code === 0,
        ...(r.code === 0 ? { rtt: /time=([\d.]+ ms)/.exec(r.stdout)?.[1] ?? "" } : {}),
      });
    }
    if (state.pods[from]) src.ns.close();
    return out;
  } finally {
    lab.close();
  }
}

/** Runs a command in a pod, a node or the outside host; returns its exit code. */
export async function exec(name: string, who: string, cmd: string[]): Promise<number> {
  const { lab, state } = open(name);
  try {
    const p = state.pods[who];
    const ns = p ? Netns.named(p.netns) : who === "outside" ? lab.outside.ns : lab.node(who).ns;
    const child = ns.spawn(cmd[0]!, {
      args: cmd.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    });
    if (p) ns.close();
    return (await child.status).code;
  } finally {
    lab.close();
  }
}

/** Runs `ohno ipam …` against the lab's etcd, from node1 (etcd is reachable from nodes). */
export async function ipam(
  name: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { lab, state } = open(name);
  try {
    return await runCommand(lab.node(state.nodes[0]!.name).ns, state.ohno, {
      args: ["ipam", "--etcd-endpoints", state.etcd.endpoint, ...args],
    });
  } finally {
    lab.close();
  }
}

export interface LabStatus {
  name: string;
  etcd: { endpoint: string; running: boolean };
  nodes: {
    name: string;
    ipv4: string;
    ipv6: string;
    agent: "ready" | "not ready" | "down";
    pid: number;
    /** The agent's routing problems, from its `/status` (absent when it did not answer). */
    routing?: LabNodeRouting;
    /** The bgp backend's sessions (BIRD's, read with birdc); absent with other backends. */
    bgp?: BgpSession[];
  }[];
  /** The router's BGP sessions (`--bgp-router bird`). */
  router?: { bgp: BgpSession[] };
  blocks: { cidr: string; node: string; used: number }[];
  pods: { name: string; node: string; ips: string[] }[];
}

/** What `ohno lab status` shows of a node's routing (from the agent's `/status`). */
export interface LabNodeRouting {
  backend: string;
  /** Next hops the kernel refused as off-link (host-gw across subnets). */
  unreachableNextHops: { node?: string; via?: string; dst: string }[];
  /** vxlan: peers whose VNI or port differ from the node's. */
  vxlanMismatches: {
    node: string;
    vni: number;
    port: number;
    localVni: number;
    localPort: number;
  }[];
}

/** A node agent's routing status, or undefined when it does not answer. */
async function agentRouting(ns: Netns): Promise<LabNodeRouting | undefined> {
  const r = await runCommand(ns, "curl", {
    args: ["-s", "--fail", "--max-time", "2", "http://127.0.0.1:9753/status"],
  });
  if (r.code !== 0) return undefined;
  try {
    const s = JSON.parse(r.stdout) as { routing?: Partial<LabNodeRouting> };
    if (!s.routing) return undefined;
    return {
      backend: s.routing.backend ?? "",
      unreachableNextHops: s.routing.unreachableNextHops ?? [],
      vxlanMismatches: s.routing.vxlanMismatches ?? [],
    };
  } catch {
    return undefined;
  }
}

export async function status(name: string): Promise<LabStatus> {
  const { lab, state } = open(name);
  try {
    const nodes: LabStatus["nodes"] = [];
    for (const n of state.nodes) {
      const ns = lab.node(n.name).ns;
      const alive = processAlive(n.pid);
      const agent = !alive
        ? "down"
        : (await curlOk(ns, "http://127.0.0.1:9753/readyz"))
        ? "ready"
        : "not ready";
      const routing = alive ? await agentRouting(ns) : undefined;
      const bgp = await bgpStatus(ns, `${n.dir}/run/bird.ctl`);
      nodes.push({
        name: n.name,
        ipv4: n.ipv4,
        ipv6: n.ipv6,
        agent,
        pid: n.pid,
        ...(routing ? { routing } : {}),
        ...(bgp ? { bgp } : {}),
      });
    }
    const b = await ipam(name, ["blocks", "-o", "json"]);
    const blocks = b.code === 0
      ? (JSON.parse(b.stdout) as { cidr: string; node: string; used: number }[]).map((x) => ({
        cidr: x.cidr,
        node: x.node,
        used: x.used,
      }))
      : [];
    return {
      name,
      etcd: { endpoint: state.etcd.endpoint, running: processAlive(state.etcd.pid) },
      nodes,
      ...(state.bgpRouter?.pid
        ? { router: { bgp: await bgpStatus(lab.ns, `${labDir(name)}/router-bird.ctl`) ?? [] } }
        : {}),
      blocks,
      pods: Object.values(state.pods).map((p) => ({ name: p.name, node: p.node, ips: p.ips })),
    };
  } finally {
    lab.close();
  }
}

/** Stops an agent (SIGTERM, or SIGKILL with `kill: true`). */
export async function stopAgent(name: string, node: string, kill = false): Promise<void> {
  const n = readState(name).nodes.find((x) => x.name === node);
  if (!n) throw new Error(`lab ${name} has no node ${node}`);
  try {
    Deno.kill(n.pid, kill ? "SIGKILL" : "SIGTERM");
  } catch {
    // gone
  }
  await waitFor(
    `the agent on ${node} to exit`,
    10_000,
    () => Promise.resolve(!processAlive(n.pid)),
  );
}

/** Starts a node's agent again (after stopAgent), waiting until it is ready. */
export async function startAgent(name: string, node: string): Promise<void> {
  const { lab, state } = open(name);
  try {
    const n = state.nodes.find((x) => x.name === node);
    if (!n) throw new Error(`lab ${name} has no node ${node}`);
    // A killed agent stays a zombie until its parent (init, once `ohno lab up` has
    // exited) reaps it, which may take a moment: processAlive counts zombies as down.
    if (processAlive(n.pid)) throw new Error(`the agent on ${node} is running (pid ${n.pid})`);
    const pid = spawnDetached(lab.node(node).ns, state.ohno, [
      "daemon",
      "--config",
      `${n.dir}/ohno.json`,
    ], `${n.dir}/daemon.out`);
    await updateState(name, (s) => {
      s.nodes.find((x) => x.name === node)!.pid = pid;
    });
    await waitFor(`the agent on ${node} ready`, 60_000, async () => {
      if (!processAlive(pid)) {
        throw new Error(`the agent on ${node} exited:\n${tail(`${n.dir}/daemon.out`)}`);
      }
      return await curlOk(lab.node(node).ns, "http://127.0.0.1:9753/readyz");
    });
  } finally {
    lab.close();
  }
}

/** Stops or starts the lab's etcd (its data stays). */
/**
 * Restarts every node's agent with `patch` merged over its configuration (a backend
 * switch: `{ backend: "bgp" }`), one node after the other.
 */
export async function restartAgents(name: string, patch: Record<string, unknown>): Promise<void> {
  for (const n of readState(name).nodes) {
    await stopAgent(name, n.name);
    const file = `${n.dir}/ohno.json`;
    const cfg = JSON.parse(Deno.readTextFileSync(file));
    Deno.writeTextFileSync(file, JSON.stringify({ ...cfg, ...patch }, null, 2));
    await startAgent(name, n.name);
  }
}

export async function etcdStop(name: string): Promise<void> {
  const s = readState(name);
  try {
    Deno.kill(s.etcd.pid, "SIGKILL");
  } catch {
    // gone
  }
  await waitFor("etcd to exit", 10_000, () => Promise.resolve(!processAlive(s.etcd.pid)));
}

export async function etcdStart(name: string): Promise<void> {
  const { lab, state } = open(name);
  try {
    const endpoint = state.etcd.endpoint;
    const pid = spawnEtcd(lab.ns, labDir(name), endpoint);
    await updateState(name, (s) => {
      s.etcd.pid = pid;
    });
    await waitFor("etcd answering", 20_000, () => curlOk(lab.ns, "http://127.0.0.1:2379/health"));
  } finally {
    lab.close();
  }
}

/** Takes the lab down: agents, etcd, pods, namespaces, state. Works after a crash. */
export async function down(name: string): Promise<string[]> {
  try {
    Deno.statSync(`${labDir(name)}/kube.json`);
    return await (await import("./kube.ts")).kubeDown(name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  let state: LabState | undefined;
  try {
    state = readState(name);
  } catch {
    // no state: remove what exists by name
  }
  for (
    const pid of [...(state?.nodes.map((n) => n.pid) ?? []), state?.etcd.pid].filter((
      p,
    ): p is number => !!p)
  ) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  const removed = await labDown(name);
  await Deno.remove(labDir(name), { recursive: true }).catch(() => {});
  return removed;
}
