/**
 * A CNI "node" for tests: a host namespace the plugin runs in (as a runtime would run
 * it in the node's namespace), a temp IPAM data dir and log file, pods as namespaces,
 * and readers of what the plugin left behind (links, addresses, allocations).
 *
 * `await using node = await cniNode()` removes all of it, also when the test fails.
 * @module
 */

import { type IpAddr, ipJson, type IpLink } from "../../netns/ip.ts";
import { type TempNetns, tempNetns } from "./netns.ts";
import { callCni, type CniCall, type CniReply, OHNO } from "./ohno.ts";

export interface CniNodeOptions {
  network?: string;
  bridge?: string;
  /** `ipam.ranges` (default: 10.88.0.0/24 and fd00:88::/64). */
  ranges?: unknown;
}

export interface HostState {
  links: string[];
  addresses: string[];
  allocations: string[];
}

export interface CniNode extends AsyncDisposable {
  host: TempNetns;
  dataDir: string;
  logFile: string;
  network: string;
  bridge: string;
  /** The ohno network config for a version (`extra` merged on top). */
  conf(version?: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** A pod namespace, removed with the node. */
  pod(tag?: string): Promise<TempNetns>;
  /** Runs a plugin inside the host namespace with the node's log file. */
  call(c: Omit<CniCall, "host" | "config"> & { config?: unknown }): Promise<CniReply>;
  /** ADD of dist/ohno for a pod; throws when it fails. */
  add(pod: TempNetns, containerID: string, version?: string, ifname?: string): Promise<CniReply>;
  del(
    pod: TempNetns | undefined,
    containerID: string,
    version?: string,
    ifname?: string,
  ): Promise<CniReply>;
  /**
   * Addresses allocated in this node's store (any network); none when no store was ever
   * written. An unreadable or malformed store throws.
   */
  allocations(): string[];
  /** Links, addresses and allocations on the node right now. */
  state(): Promise<HostState>;
}

export async function cniNode(opts: CniNodeOptions = {}): Promise<CniNode> {
  const host = await tempNetns("host");
  const dataDir = await Deno.makeTempDir({ prefix: "ohnot-ipam-" });
  const logFile = `${dataDir}.log`;
  const pods: TempNetns[] = [];
  const network = opts.network ?? "ohnotest";
  const bridge = opts.bridge ?? "ohno0";
  const ranges = opts.ranges ?? [[{ subnet: "10.88.0.0/24" }], [{ subnet: "fd00:88::/64" }]];

  const node: CniNode = {
    host,
    dataDir,
    logFile,
    network,
    bridge,
    conf(version = "1.0.0", extra = {}) {
      return {
        cniVersion: version,
        name: network,
        type: "ohno",
        bridge,
        ipam: { type: "ohno", dataDir, ranges },
        ...extra,
      };
    },
    async pod(tag = "pod") {
      const p = await tempNetns(tag);
      pods.push(p);
      return p;
    },
    call(c) {
      return callCni({
        ...c,
        host: host.ns,
        config: c.config ?? node.conf(),
        env: { OHNO_LOG_FILE: logFile, ...c.env },
      });
    },
    async add(pod, containerID, version = "1.0.0", ifname = "eth0") {
      const r = await node.call({
        command: "ADD",
        containerID,
        netns: pod.path,
        ifname,
        config: node.conf(version),
      });
      if (r.code !== 0) throw new Error(`ADD ${containerID} failed: ${r.stdout}${r.stderr}`);
      return r;
    },
    del(pod, containerID, version = "1.0.0", ifname = "eth0") {
      return node.call({
        command: "DEL",
        containerID,
        netns: pod?.path ?? "",
        ifname,
        config: node.conf(version),
      });
    },
    allocations() {
      let text: string;
      try {
        text = Deno.readTextFileSync(`${dataDir}/store.json`);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return []; // nothing was ever allocated
        throw e; // "nothing left" must not pass because the store cannot be read
      }
      const s = JSON.parse(text) as { keys: Record<string, unknown> };
      return Object.keys(s.keys).filter((k) => k.includes("/ips/")).map((k) =>
        k.slice(k.lastIndexOf("/") + 1)
      ).sort();
    },
    async state() {
      const links = await ipJson<IpLink[]>(["link", "show"], { netns: host.ns });
      const addrs = await ipJson<IpAddr[]>(["addr", "show"], { netns: host.ns });
      return {
        links: links.map((l) => l.ifname).sort(),
        addresses: addrs.flatMap((a) =>
          a.addr_info.filter((i) => i.scope !== "link").map((i) =>
            `${a.ifname} ${i.local}/${i.prefixlen}`
          )
        ).sort(),
        allocations: node.allocations(),
      };
    },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(pods.map((p) => p[Symbol.asyncDispose]()));
      await host[Symbol.asyncDispose]();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      await Deno.remove(logFile).catch(() => {});
    },
  };
  return node;
}

export { OHNO };
