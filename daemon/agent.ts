/**
 * `ohno daemon`: the node agent's start-up order and its loops.
 *
 * 1. config (the caller) → node name and node IP → the datastore → the IPAM socket,
 *    refusing allocations (`not-ready`) → pools, node record, block claim (retried until
 *    etcd answers) → allocations served (the state is loaded, so no address is handed out
 *    from a partial view);
 * 2. routes: a full reconcile to every peer's blocks (host-gw), then masquerade;
 * 3. install: the plugin binary and the conflist naming the socket (written only now, so
 *    a runtime never picks ohno's config before the node can serve it);
 * 4. ready: `/readyz` and, with Kubernetes, `NetworkUnavailable=False`;
 * 5. loops until SIGTERM: peers from the datastore watch → routes (plus the periodic
 *    resync); deleted Nodes → their blocks and addresses released; GC of allocations
 *    whose pod is gone.
 *
 * Shutdown stops serving and leaves routes, masquerade, conflist and pods as they are:
 * a restarted agent resyncs, it does not rebuild. `--cleanup` removes ohno's routes,
 * its nftables table and its conflist.
 * @module
 */

import { sleep } from "../lib/async.ts";
import {
  ClusterIpam,
  type Peer as IpamPeer,
  type PeerChange,
  type PeerWatchStats,
} from "../ipam/cluster.ts";
import { selfExecutable } from "../lib/argv0.ts";
import type { Logger } from "../lib/log.ts";
import { OHNO_VERSION } from "../lib/version.ts";
import type { DaemonConfig } from "./config.ts";
import { Health, serveHealth } from "./health.ts";
import { openDatastore } from "./datastore.ts";
import { conflist, conflistsBefore, installPlugin, uninstallConflist } from "./install.ts";
import { startIpamServer } from "./ipamserver.ts";
import { canEnterNamespaces, podWork } from "./podwork.ts";
import { applyMasquerade, removeMasquerade } from "./masq.ts";
import { DaemonMetrics } from "./metrics.ts";
import { resolveNodeIPs } from "./nodeip.ts";
import { BgpBackend, bgpRecord, cleanupBird, watchBgp } from "./routing/bgp.ts";
import type { PeerEvent } from "./routing/diff.ts";
import { HostGwBackend } from "./routing/hostgw.ts";
import { RouteSync } from "./routing/sync.ts";
import { unixRequest } from "../ipam/unixhttp.ts";
import { ROUTES } from "../ipam/protocol.ts";
import type { Backend } from "./routing/types.ts";
import { removeVxlanDevices, VxlanBackend, vxlanPodMtu, vxlanRecord } from "./routing/vxlan.ts";
import type { KubeClient } from "./k8s/client.ts";

export interface AgentOptions {
  config: DaemonConfig;
  log: Logger;
  /** Aborted on SIGTERM/SIGINT. */
  signal: AbortSignal;
}

type K8s = typeof import("./k8s/mod.ts");

/** Retries `fn` with backoff until it succeeds or the signal aborts (etcd not up yet). */
async function retrying<T>(
  what: string,
  log: Logger,
  signal: AbortSignal,
  fn: () => Promise<T>,
): Promise<T> {
  let wait = 500;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (signal.aborted) throw e;
      log.warn(`${what} failed; retrying in ${wait} ms`, { error: (e as Error).message });
      await sleep(wait, signal);
      wait = Math.min(wait * 2, 10_000);
    }
  }
}

const toRoutingPeer = (p: IpamPeer) => ({
  node: p.node,
  ips: p.ips,
  blocks: p.blocks,
  ...(p.backend ? { backend: p.backend } : {}),
});

/** Runs the agent until `signal` aborts. */
export async function runAgent(o: AgentOptions): Promise<void> {
  const { config: cfg, signal } = o;
  const log = o.log;
  log.info("starting", {
    version: OHNO_VERSION,
    node: cfg.nodeName,
    backend: cfg.backend,
    datastore: cfg.datastore.type,
  });

  const metrics = new DaemonMetrics({ backend: cfg.backend });
  metrics.buildInfo.set(1, { version: OHNO_VERSION, backend: cfg.backend });
  const health = new Health();
  health.setReady(false, "starting");
  await using _health = await serveHealth({
    address: cfg.metricsAddress,
    health,
    registry: metrics.registry,
  });

  const run: AgentRun = { cfg, log, signal, metrics, health, ...await connectKubernetes(cfg) };
  if (run.kube) log.info("kubernetes on", { server: run.kube.server });
  const node = await nodeIdentity(run);
  const { backend, backendRecord } = await chooseBackend(run, node);

  // Datastore, pools, node record, blocks.
  const store = await openDatastore(cfg.datastore, {
    onRequest: (op) => metrics.datastoreRequests.inc({ op }),
  });
  try {
    const ipam = new ClusterIpam(store, { onGroup: metrics.observeGroup });
    // The IPAM socket answers from now on, but allocations are refused (`not-ready`, CNI
    // error 11) until the pools, the node record and the blocks are loaded below.
    let ipamReady = false;
    // The CNI calls it runs in-process reach its IPAM through its own handler.
    const bound: { handle?: (req: Request) => Promise<Response> } = {};
    const podCalls = canEnterNamespaces();
    log.info(
      podCalls
        ? "pod network work: done by the agent for the plugin (POST /v1/cni)"
        : "pod network work: done by the plugin (no CAP_SYS_ADMIN here to enter pod namespaces)",
    );
    await using server = startIpamServer({
      ...ipamServerOptions(run, ipam, () => ipamReady),
      ...(podCalls ? { cni: podWork(() => bound.handle!) } : {}),
    });
    bound.handle = server.handle;
    const blocks = await loadState(run, ipam, node.ips, backendRecord);
    // State loaded: allocations are served from here on.
    ipamReady = true;

    const { sync, routing, peerWatch } = await startRouting(run, ipam, backend, node.ips, blocks);
    const probe = livenessChecks(run, sync);
    const first = await Promise.race([sync.synced, sleep(60_000, signal).then(() => undefined)]);
    if (!first) return;
    log.info("routes programmed", { ipv4: first.programmed[4], ipv6: first.programmed[6] });

    installCni(run, node.mtu);
    await markReady(run);
    await Promise.allSettled(backgroundLoops(run, ipam, backend, [routing, peerWatch, probe]));
    ipamReady = false;
    log.info("stopping: routes, masquerade and pods stay; a restarted agent resyncs");
  } finally {
    run.kube?.close();
    await store.close();
  }
}

/** What the phases of {@link runAgent} share. */
interface AgentRun {
  cfg: DaemonConfig;
  log: Logger;
  signal: AbortSignal;
  metrics: DaemonMetrics;
  health: Health;
  /** Loaded when Kubernetes is not off. */
  k8s: K8s | undefined;
  /** Set when Kubernetes is on and there is a connection. */
  kube: KubeClient | undefined;
}

/** This node's addresses (IPv4 first) and the pods' MTU. */
interface NodeIdentity {
  ips: string[];
  mtu: number;
}

/** Kubernetes, when on: loaded lazily, it is not needed without a cluster. */
async function connectKubernetes(
  cfg: DaemonConfig,
): Promise<{ k8s: K8s | undefined; kube: KubeClient | undefined }> {
  let k8s: K8s | undefined;
  let kube: KubeClient | undefined;
  const kubeWanted = cfg.kubernetes.enabled !== "off";
  if (kubeWanted) {
    k8s = await import("./k8s/mod.ts");
    const conn = k8s.resolveKubeConnection({ kubeconfig: cfg.kubernetes.kubeconfig });
    if (conn) kube = new k8s.KubeClient(conn);
    else if (cfg.kubernetes.enabled === "on") {
      throw new Error(
        "kubernetes is on but there is neither a kubeconfig nor an in-cluster service account",
      );
    }
  }
  return { k8s, kube };
}

/** Node identity: its addresses (retried until found) and the MTU its pods get. */
async function nodeIdentity(run: AgentRun): Promise<NodeIdentity & { underlayMtu: number }> {
  const { cfg, log, signal, k8s, kube } = run;
  const ips = await retrying("node IP discovery", log, signal, () =>
    resolveNodeIPs(cfg.nodeIP, {
      ...(kube && k8s
        ? { kubernetes: () => k8s!.discoverNodeIPs(kube!, cfg.nodeName, signal) }
        : {}),
    }));
  const nodeIps = [ips.ipv4, ips.ipv6].filter((x): x is string => !!x);
  log.info("node identity", { node: cfg.nodeName, ips: nodeIps.join(","), via: ips.source });
  // MTU auto: host-gw adds no overhead; vxlan the outer headers of the underlay it uses.
  const underlayMtu = ips.mtu ?? 1500;
  const families = [ips.ipv4 ? 4 : 0, ips.ipv6 ? 6 : 0].filter((f): f is 4 | 6 => f !== 0);
  const mtu = cfg.mtu !== "auto"
    ? cfg.mtu
    : cfg.backend === "vxlan"
    ? vxlanPodMtu(underlayMtu, families)
    : underlayMtu;
  return { ips: nodeIps, mtu, underlayMtu };
}

/**
 * The configured routing backend and the record it publishes in the node's entry; what a
 * previous backend left on the node (VXLAN devices, ohno's BIRD) goes.
 */
async function chooseBackend(
  run: AgentRun,
  node: NodeIdentity & { underlayMtu: number },
): Promise<{ backend: Backend; backendRecord: Record<string, unknown> | undefined }> {
  const { cfg, log } = run;
  const { ips: nodeIps, mtu, underlayMtu } = node;
  let backend: Backend;
  let backendRecord: Record<string, unknown> | undefined;
  if (cfg.backend === "vxlan") {
    backend = new VxlanBackend({ node: cfg.nodeName, underlayMtu, ...cfg.vxlan, log });
    backendRecord = await vxlanRecord(cfg.nodeName, cfg.vxlan);
    log.info("vxlan", { ...cfg.vxlan, ...backendRecord, podMtu: mtu });
  } else if (cfg.backend === "bgp") {
    backend = new BgpBackend({
      settings: cfg.bgp,
      clusterCIDRs: cfg.clusterCIDRs,
      dir: cfg.runDir,
      log,
    });
    backendRecord = bgpRecord(nodeIps, cfg.bgp);
    log.info("bgp", { ...backendRecord, nodeMesh: cfg.bgp.nodeMesh, peers: cfg.bgp.peers.length });
    // A node switched from host-gw or vxlan: their routes (ohno's protocol) would shadow
    // BIRD's (the kernel refuses a second route to the same destination and metric), and
    // their VXLAN devices go too. Routes are missing until BIRD has learned them again.
    const routes = await new HostGwBackend().cleanup();
    const devices = await removeVxlanDevices();
    if (routes || devices) {
      log.info("removed the routes of a previous backend", { routes, vxlanDevices: devices });
    }
  } else {
    backend = new HostGwBackend();
    // A node switched from vxlan: its devices (with their neighbours and FDB) go.
    const removed = await removeVxlanDevices();
    if (removed) log.info("removed the VXLAN devices of a previous backend", { removed });
  }

  if (cfg.backend !== "bgp") {
    // A node switched from bgp: ohno's BIRD stops, its routes go.
    const bird = await cleanupBird(cfg.runDir, false);
    if (bird.stopped) log.info("stopped the BIRD of a previous backend", { routes: bird.routes });
  }
  return { backend, backendRecord };
}

/** The IPAM socket's options; `ready` says whether allocations are served yet. */
function ipamServerOptions(
  run: AgentRun,
  ipam: ClusterIpam,
  ready: () => boolean,
): Parameters<typeof startIpamServer>[0] {
  const { cfg, log, signal, metrics, k8s, kube } = run;
  return {
    socket: cfg.socket,
    network: cfg.networkName,
    node: cfg.nodeName,
    ipam,
    log,
    ready,
    ...(kube && k8s
      ? {
        podRequestedIPs: (ns: string, name: string) =>
          k8s!.podRequestedIPs(kube!, ns, name, signal),
      }
      : {}),
    // Refusals while the state loads are start-up, not etcd errors.
    observe: (e) => metrics.observeIpam(e, { starting: !ready() }),
  };
}

/** Pools, node record and block claim (retried until etcd answers); returns the blocks. */
async function loadState(
  run: AgentRun,
  ipam: ClusterIpam,
  nodeIps: string[],
  backendRecord: Record<string, unknown> | undefined,
): Promise<{ cidr: string }[]> {
  const { cfg, log, signal, metrics } = run;
  await testHoldLoad(log, signal);
  const blocks = await retrying("claiming the node's blocks", log, signal, async () => {
    for (const p of cfg.pools) await ipam.addPool(p.cidr, p.blockPrefix);
    await ipam.registerNode(cfg.nodeName, {
      ips: nodeIps,
      ...(backendRecord ? { backend: backendRecord } : {}),
    });
    return await ipam.claimBlocks(cfg.nodeName);
  });
  log.info("blocks", { blocks: blocks.map((b) => b.cidr).join(",") });
  const held = (await ipam.handles()).filter((h) => h.node === cfg.nodeName);
  metrics.allocatedAddresses.set(held.reduce((n, h) => n + h.ips.length, 0));
  return blocks;
}

/**
 * Routes to every peer's blocks: the peer watch, then (once the first list is in) the
 * routing loop, then masquerade.
 */
async function startRouting(
  run: AgentRun,
  ipam: ClusterIpam,
  backend: Backend,
  nodeIps: string[],
  blocks: { cidr: string }[],
): Promise<{ sync: RouteSync; routing: Promise<unknown>; peerWatch: Promise<void> }> {
  const { cfg, log, signal, metrics, health } = run;
  const sync = new RouteSync({
    backend,
    local: { node: cfg.nodeName, ips: nodeIps, blocks: blocks.map((b) => b.cidr) },
    resyncPeriodMs: cfg.resyncPeriodMs,
    log,
    onReconcile: metrics.observeReconcile,
  });
  health.setStatus(() => ({ node: cfg.nodeName, routing: sync.status() }));
  const { firstList, peerWatch } = watchPeers(run, ipam, sync, nodeIps);
  await Promise.race([firstList, new Promise((r) => signal.addEventListener("abort", r))]);
  const routing = sync.run(signal);
  if (cfg.masquerade && cfg.clusterCIDRs.length) {
    await applyMasquerade({ clusterCIDRs: cfg.clusterCIDRs });
    log.info("masquerade", { clusterCIDRs: cfg.clusterCIDRs.join(",") });
  }
  return { sync, routing, peerWatch };
}

/**
 * Peers: one list, then the watch's changes applied to a view (ipam/cluster/peers.ts).
 * Routing starts once the first list is in (`firstList`), so a restarted agent never
 * reconciles against an empty peer set (which would delete every route for a moment).
 */
function watchPeers(
  run: AgentRun,
  ipam: ClusterIpam,
  sync: RouteSync,
  nodeIps: string[],
): { firstList: Promise<void>; peerWatch: Promise<void> } {
  const { cfg, log, signal, metrics } = run;
  const watchStats: PeerWatchStats = { lists: 0, events: 0, batches: 0 };
  const counted = { lists: 0, events: 0 };
  let listed!: () => void;
  const firstList = new Promise<void>((r) => (listed = r));
  const applyChanges = (changes: PeerChange[]) => {
    sync.apply(peerEvents(changes, sync, cfg.nodeName, nodeIps));
    metrics.peers.set(sync.peers.length);
    metrics.peerLists.inc({}, watchStats.lists - counted.lists);
    metrics.peerEvents.inc({}, watchStats.events - counted.events);
    counted.lists = watchStats.lists;
    counted.events = watchStats.events;
    listed();
  };
  const peerWatch = (async () => {
    while (!signal.aborted) {
      try {
        for await (const changes of ipam.watchPeers({ signal, stats: watchStats })) {
          applyChanges(changes);
        }
      } catch (e) {
        if (signal.aborted) break;
        metrics.etcdErrors.inc({ op: "watch" });
        log.warn("peer watch failed; retrying", { error: (e as Error).message });
        await sleep(1000, signal);
      }
    }
  })();
  return { firstList, peerWatch };
}

/** The routing events of the watch's changes; this node's own record updates `sync`'s local. */
function peerEvents(
  changes: PeerChange[],
  sync: RouteSync,
  nodeName: string,
  nodeIps: string[],
): PeerEvent[] {
  const events: PeerEvent[] = [];
  for (const c of changes) {
    if (c.type === "reset") {
      const me = c.peers.find((p) => p.node === nodeName);
      if (me) sync.setLocal({ node: nodeName, ips: nodeIps, blocks: me.blocks });
      events.push({
        type: "reset",
        peers: c.peers.filter((p) => p.node !== nodeName).map(toRoutingPeer),
      });
    } else if (c.type === "put") {
      if (c.peer.node === nodeName) {
        sync.setLocal({ node: nodeName, ips: nodeIps, blocks: c.peer.blocks });
      } else events.push({ type: "put", peer: toRoutingPeer(c.peer) });
    } else if (c.node !== nodeName) events.push(c);
  }
  return events;
}

/** Installs the plugin and its conflist (only once routes are programmed). */
function installCni(run: AgentRun, mtu: number): void {
  const { cfg, log } = run;
  const installed = installPlugin({
    source: selfExecutable(),
    binDir: cfg.cniBinDir,
    confDir: cfg.cniConfDir,
    conflistName: cfg.conflistName,
    allowLauncher: cfg.allowLauncher,
    conflist: conflist({
      network: cfg.networkName,
      bridge: cfg.bridge,
      mtu,
      socket: cfg.socket,
      logFile: cfg.cniLogFile,
      ...portmapVersions(cfg.cniBinDir, log),
    }),
  });
  log.info("plugin installed", {
    binDir: cfg.cniBinDir,
    file: `${cfg.cniConfDir}/${cfg.conflistName}`,
    binaryChanged: installed.binary,
    conflistChanged: installed.conflist,
  });
}

/** Ready: `NetworkUnavailable=False` with Kubernetes, then `/readyz`. */
async function markReady(run: AgentRun): Promise<void> {
  const { cfg, log, signal, metrics, health, k8s, kube } = run;
  if (kube && k8s) {
    await retrying(
      "NetworkUnavailable=False",
      log,
      signal,
      () => k8s!.setNetworkAvailable(kube!, cfg.nodeName, { signal }),
    );
  }
  health.setReady(true);
  metrics.ready.set(1);
  log.info("ready");
}

/** How often the agent asks its own IPAM socket, and how long a silence it tolerates. */
const IPAM_PROBE_MS = 10_000;
const IPAM_SILENT_MS = 35_000;

/**
 * `/healthz`'s checks (a failing one makes the kubelet restart the agent):
 * - `routes`: the route loop started a reconcile within 3 resync periods (at least 90 s);
 * - `ipam`: the IPAM socket answered the agent's own probe (`GET /v1/status`, every 10 s)
 *   within 35 s.
 * The Kubernetes watch adds its own (`watchDeletedNodes`). Returns the probe's loop.
 */
function livenessChecks(run: AgentRun, sync: RouteSync): Promise<void> {
  const { cfg, health, signal } = run;
  const routesWithin = Math.max(3 * cfg.resyncPeriodMs, 90_000);
  const started = Date.now();
  health.addCheck("routes", () => {
    const last = sync.lastAttemptAt ?? started;
    const quiet = Date.now() - last;
    return quiet > routesWithin
      ? `no route reconcile for ${Math.round(quiet / 1000)} s`
      : undefined;
  });
  let answeredAt = Date.now();
  health.addCheck("ipam", () => {
    const quiet = Date.now() - answeredAt;
    return quiet > IPAM_SILENT_MS
      ? `the IPAM socket ${cfg.socket} has not answered for ${Math.round(quiet / 1000)} s`
      : undefined;
  });
  return (async () => {
    while (!signal.aborted) {
      try {
        const ask = AbortSignal.any([signal, AbortSignal.timeout(5000)]);
        const r = await unixRequest(cfg.socket, "GET", ROUTES.status.path, undefined, ask);
        if (r.status > 0) answeredAt = Date.now();
      } catch {
        // not answered: the check says so once the silence is long enough
      }
      await sleep(IPAM_PROBE_MS, signal);
    }
  })();
}

/**
 * Every 10 s: does another network configuration sort before ours in the CNI conf dir?
 * Runtimes use the first, so pods would not get ohno. While one does:
 * `ohno_conflist_shadowed 1`, and on each change a warning in the log and, with
 * Kubernetes, a Warning Event on the Node (reason `ConflistShadowed`).
 */
async function watchConflistOrder(run: AgentRun): Promise<void> {
  const { cfg, log, signal, metrics, k8s, kube } = run;
  let last = "";
  while (!signal.aborted) {
    const before = conflistsBefore(cfg.cniConfDir, cfg.conflistName);
    metrics.conflistShadowed.set(before.length ? 1 : 0);
    const now = before.join(",");
    if (now !== last && before.length) {
      const message = `${before.join(", ")} in ${cfg.cniConfDir} sorts before ` +
        `${cfg.conflistName}: runtimes use the first, so new pods do not get ohno`;
      log.warn("another network configuration comes first", { files: now, dir: cfg.cniConfDir });
      if (k8s && kube) {
        await k8s.nodeWarning(kube, cfg.nodeName, "ConflistShadowed", message, { signal })
          .catch((e) => log.warn("recording the Event failed", { error: (e as Error).message }));
      }
    } else if (now !== last) {
      log.info("ohno's conflist comes first again", { dir: cfg.cniConfDir });
    }
    last = now;
    await sleep(10_000, signal);
  }
}

/** The loops that run until SIGTERM: `loops` plus BGP's watch and the Kubernetes loops. */
function backgroundLoops(
  run: AgentRun,
  ipam: ClusterIpam,
  backend: Backend,
  loops: Promise<unknown>[],
): Promise<unknown>[] {
  const { cfg, log, signal, metrics, health, k8s, kube } = run;
  if (backend instanceof BgpBackend) {
    loops.push(
      watchBgp(backend, {
        registry: metrics.registry,
        health,
        log,
        signal,
        routesProgrammed: metrics.routesProgrammed,
      }),
    );
  }
  loops.push(watchConflistOrder(run));
  if (kube && k8s) {
    const kubeLoop = { k8s, kube, ipam, cfg, log, signal, metrics, health };
    loops.push(watchDeletedNodes(kubeLoop), gcLoop(kubeLoop));
  }
  return loops;
}

/**
 * Test-only: with `OHNO_TEST_HOLD_LOAD=FILE` the agent waits, before loading its pools,
 * node record and blocks, until FILE no longer exists, so a test can prove that nothing
 * is allocated from a state not yet loaded (docs/daemon.md). Nothing sets it outside tests.
 */
async function testHoldLoad(log: Logger, signal: AbortSignal): Promise<void> {
  const file = Deno.env.get("OHNO_TEST_HOLD_LOAD");
  if (!file) return;
  log.warn("test hook: holding the state load until the file is removed", { file });
  for (;;) {
    try {
      Deno.statSync(file);
    } catch {
      return;
    }
    if (signal.aborted) return;
    await sleep(50, signal);
  }
}

/**
 * The CNI versions of the portmap plugin in the node's CNI bin dir (its VERSION answer),
 * as the conflist's `portmap` option; none when it is not there or does not answer.
 */
function portmapVersions(binDir: string, log: Logger): { portmap?: string[] } {
  const bin = `${binDir}/portmap`;
  try {
    if (!Deno.statSync(bin).isFile) return {};
  } catch {
    return {};
  }
  // Synchronous, once per install: the VERSION request fed through sh.
  const r = new Deno.Command("/bin/sh", {
    args: ["-c", `echo '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION "$0"`, bin],
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  try {
    const versions = (JSON.parse(new TextDecoder().decode(r.stdout)) as {
      supportedVersions?: string[];
    }).supportedVersions;
    if (Array.isArray(versions)) return { portmap: versions };
  } catch {
    // not a VERSION answer
  }
  log.warn("portmap is installed but does not answer VERSION; not chained", { bin });
  return {};
}

/** What the Kubernetes loops ({@link watchDeletedNodes}, {@link gcLoop}) work with. */
interface KubeLoopOptions {
  k8s: K8s;
  kube: KubeClient;
  ipam: ClusterIpam;
  cfg: DaemonConfig;
  log: Logger;
  /** Ends the loop. */
  signal: AbortSignal;
  metrics: DaemonMetrics;
  health: Health;
}

/**
 * A failed Kubernetes request of loop `op`: logged, counted, and when the API server
 * refuses the agent (401/403: its RBAC or token, which retrying does not fix) the agent
 * is not ready, with the reason, until a request of that loop succeeds again.
 */
function kubeFailed(o: KubeLoopOptions, op: string, e: unknown, retryInMs?: number): void {
  o.metrics.kubeErrors.inc({ op });
  // KubeApiError.forbidden, read without importing the lazily loaded client.
  const forbidden = (e as { forbidden?: unknown } | undefined)?.forbidden === true;
  const fields = {
    op,
    error: (e as Error)?.message ?? String(e),
    ...(retryInMs !== undefined ? { retryInMs } : {}),
  };
  if (forbidden) {
    o.log.error("the Kubernetes API refuses the agent (check its RBAC and token)", fields);
    o.health.setProblem(`kubernetes ${op}`, `Kubernetes ${op}: ${(e as Error).message}`);
  } else {
    o.log.warn("a Kubernetes request failed", fields);
  }
}

function kubeSucceeded(o: KubeLoopOptions, op: string): void {
  o.health.setProblem(`kubernetes ${op}`, undefined);
}

/** Deleted Nodes give their blocks and addresses back (whichever agent sees it first). */
async function watchDeletedNodes(o: KubeLoopOptions): Promise<void> {
  const { k8s, kube, ipam, cfg, log, signal } = o;
  const release = async (name: string) => {
    if (name === cfg.nodeName) return;
    try {
      const r = await ipam.releaseNode(name);
      if (r.blocks.length || r.addresses) {
        log.info("released a deleted node", {
          node: name,
          blocks: r.blocks.join(","),
          attachments: r.addresses,
        });
      }
    } catch (e) {
      log.warn("releasing a deleted node failed", { node: name, error: (e as Error).message });
    }
  };
  // Liveness: the watch loop moves (an answer, an error it will retry, an event). Its idle
  // limit and back-off bound every wait, so a loop quiet for longer is stuck.
  let movedAt = Date.now();
  const moved = () => movedAt = Date.now();
  const stuckAfter = 2 * cfg.kubeWatchIdleMs + 60_000;
  o.health.addCheck("kubernetes", () => {
    const quiet = Date.now() - movedAt;
    return quiet > stuckAfter
      ? `the Kubernetes Node watch has not moved for ${Math.round(quiet / 1000)} s`
      : undefined;
  });
  const watch = k8s.watchNodes(kube, {
    signal,
    onError: (e, retryInMs) => {
      moved();
      kubeFailed(o, "watch-nodes", e, retryInMs);
    },
    onOk: () => {
      moved();
      kubeSucceeded(o, "watch-nodes");
    },
    ...(cfg.kubeWatchIdleMs ? { watchIdleMs: cfg.kubeWatchIdleMs } : {}),
  });
  for await (const e of watch) {
    moved();
    if (e.type === "deleted") await release(e.name);
    if (e.type === "synced") {
      // Nodes the datastore knows that Kubernetes does not: deleted while we were away.
      const live = new Set(e.nodes.map((n) => n.metadata.name));
      for (const n of await ipam.nodes().catch(() => [])) {
        if (!live.has(n.name)) await release(n.name);
      }
    }
  }
}

/**
 * Releases this node's allocations whose pod is gone: matched by pod UID (K8S_POD_UID),
 * never by name, and only once the allocation is older than the grace period (a pod
 * being created may not be listed yet).
 */
async function gcLoop(o: KubeLoopOptions): Promise<void> {
  const { k8s, kube, ipam, cfg, log, signal, metrics } = o;
  while (!signal.aborted) {
    await sleep(cfg.gcPeriodMs, signal);
    if (signal.aborted) break;
    try {
      const { pods } = await k8s.listPodsOnNode(kube, cfg.nodeName, signal);
      kubeSucceeded(o, "gc");
      const uids = new Set(pods.map((p) => p.uid));
      const podIps = new Set(pods.flatMap((p) => p.podIPs));
      const now = Date.now();
      for (const h of await ipam.handles()) {
        if (h.node !== cfg.nodeName || !h.podUid) continue;
        if (uids.has(h.podUid) || h.ips.some((ip) => podIps.has(ip))) continue;
        if (now - Date.parse(h.createdAt) < cfg.gcGracePeriodMs) continue;
        const released = await ipam.release(h, { node: cfg.nodeName });
        if (released.length) {
          metrics.released(released.length);
          log.info("GC released the addresses of a pod that is gone", {
            pod: `${h.podNamespace ?? "-"}/${h.podName ?? "-"}`,
            uid: h.podUid,
            ips: released.join(","),
          });
        }
      }
    } catch (e) {
      if (signal.aborted) break;
      kubeFailed(o, "gc", e);
    }
  }
}

/**
 * `ohno daemon --cleanup`: removes ohno's routes, VXLAN devices (whichever backend is
 * configured: a node may have switched), nftables table and conflist.
 */
export async function cleanupAgent(cfg: DaemonConfig, log: Logger): Promise<void> {
  await new HostGwBackend().cleanup();
  const devices = await removeVxlanDevices();
  const bird = await cleanupBird(cfg.runDir, cfg.backend === "bgp");
  await removeMasquerade();
  const removed = uninstallConflist(cfg.cniConfDir, cfg.conflistName);
  log.info("cleaned up", {
    routes: "removed",
    vxlanDevices: devices,
    bird: bird.stopped ? "stopped" : "not running",
    birdRoutes: bird.routes,
    masquerade: "removed",
    conflist: removed ? "removed" : "absent",
  });
}
