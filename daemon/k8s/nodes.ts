/**
 * What the node agent does with Nodes: learn its addresses (InternalIP, v4 and v6), say
 * the network is up (`NetworkUnavailable=False`), and follow Node deletions (a deleted
 * Node's blocks and addresses are released by the caller).
 * @module
 */

import { formatIp, parseIp } from "../../ipam/addr.ts";
import type { KubeClient, KubeObject } from "./client.ts";
import { inform, type InformerEvent } from "./informer.ts";

/** The parts of a Node ohno reads. */
export interface Node extends KubeObject {
  spec?: { podCIDR?: string; podCIDRs?: string[]; providerID?: string };
  status?: {
    addresses?: { type: string; address: string }[];
    conditions?: NodeCondition[];
  };
}

export interface NodeCondition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  lastHeartbeatTime?: string;
}

/** A Node's InternalIP addresses, canonical, split by family (in the Node's order). */
export interface NodeAddresses {
  ipv4: string[];
  ipv6: string[];
}

/** The InternalIP addresses of a Node object (ignores ExternalIP, Hostname, junk). */
export function internalIPs(node: Node): NodeAddresses {
  const out: NodeAddresses = { ipv4: [], ipv6: [] };
  for (const a of node.status?.addresses ?? []) {
    if (a.type !== "InternalIP") continue;
    try {
      const ip = parseIp(a.address);
      const text = formatIp(ip.family, ip.value);
      const list = ip.family === 4 ? out.ipv4 : out.ipv6;
      if (!list.includes(text)) list.push(text);
    } catch {
      // not an address: skip
    }
  }
  return out;
}

/** The Node's path in the API. */
function nodePath(name: string): string {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253) {
    throw new TypeError(`${JSON.stringify(name)} is not a valid node name`);
  }
  return `/api/v1/nodes/${name}`;
}

/** Reads one Node. */
export function getNode(client: KubeClient, name: string, signal?: AbortSignal): Promise<Node> {
  return client.get<Node>(nodePath(name), { signal });
}

/**
 * The node's InternalIP addresses from the API (node IP discovery). Throws when the Node
 * does not exist (`KubeApiError`, status 404) or has no InternalIP at all.
 */
export async function discoverNodeIPs(
  client: KubeClient,
  name: string,
  signal?: AbortSignal,
): Promise<NodeAddresses> {
  const node = await getNode(client, name, signal);
  const ips = internalIPs(node);
  if (ips.ipv4.length === 0 && ips.ipv6.length === 0) {
    throw new Error(`node ${name} has no InternalIP address in its status`);
  }
  return ips;
}

/** The reason ohno writes on the NetworkUnavailable condition. */
const NETWORK_UP_REASON = "OhnoIsUp";

/**
 * Sets the Node's `NetworkUnavailable` condition to `False` (a strategic merge patch of
 * `status.conditions`, merged by `type`, so the kubelet's conditions stay). Call it only
 * once the routes are programmed. Returns the patched Node.
 */
export function setNetworkAvailable(
  client: KubeClient,
  name: string,
  opts: { reason?: string; message?: string; now?: Date; signal?: AbortSignal } = {},
): Promise<Node> {
  const now = (opts.now ?? new Date()).toISOString().replace(/\.\d+Z$/, "Z");
  const condition: NodeCondition = {
    type: "NetworkUnavailable",
    status: "False",
    reason: opts.reason ?? NETWORK_UP_REASON,
    message: opts.message ?? "ohno is running on this node",
    lastTransitionTime: now,
    lastHeartbeatTime: now,
  };
  return client.patch<Node>(
    `${nodePath(name)}/status`,
    { status: { conditions: [condition] } },
    "strategic",
    { signal: opts.signal },
  );
}

/**
 * Records a Warning Event about Node `name` (`kubectl describe node` and
 * `kubectl get events` show it), from component `ohno`.
 */
export function nodeWarning(
  client: KubeClient,
  name: string,
  reason: string,
  message: string,
  opts: { signal?: AbortSignal; now?: Date } = {},
): Promise<KubeObject> {
  const now = (opts.now ?? new Date()).toISOString().replace(/\.\d+Z$/, "Z");
  return client.request<KubeObject>("POST", "/api/v1/namespaces/default/events", {
    body: {
      apiVersion: "v1",
      kind: "Event",
      metadata: { generateName: `${name}.ohno.`, namespace: "default" },
      involvedObject: { apiVersion: "v1", kind: "Node", name, uid: name },
      reason,
      message,
      type: "Warning",
      source: { component: "ohno", host: name },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    },
    signal: opts.signal,
  });
}

/** The `NetworkUnavailable` condition of a Node, if it has one. */
export function networkUnavailable(node: Node): NodeCondition | undefined {
  return node.status?.conditions?.find((c) => c.type === "NetworkUnavailable");
}

/** A Node change as the agent consumes it. */
export type NodeEvent =
  | { type: "added" | "modified" | "deleted"; name: string; ips: NodeAddresses; node: Node }
  /** After every (re)list: every Node that exists now. */
  | { type: "synced"; nodes: Node[] };

/**
 * Follows the cluster's Nodes until `signal` aborts: adds, changes and deletions (also
 * deletions that happened while the watch was broken: see `inform`). Bookmarks are
 * consumed inside.
 */
export async function* watchNodes(
  client: KubeClient,
  opts: {
    signal: AbortSignal;
    onError?: (e: unknown, retryInMs: number) => void;
    /** The API server answers again (a list, or a watch it accepted). */
    onOk?: () => void;
    watchTimeoutSeconds?: number;
    watchIdleMs?: number;
  },
): AsyncGenerator<NodeEvent> {
  for await (
    const e of inform<Node>(client, {
      path: "/api/v1/nodes",
      signal: opts.signal,
      ...(opts.onError ? { onError: opts.onError } : {}),
      ...(opts.onOk ? { onOk: opts.onOk } : {}),
      ...(opts.watchTimeoutSeconds ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
      ...(opts.watchIdleMs ? { watchIdleMs: opts.watchIdleMs } : {}),
    })
  ) {
    const ev = e as InformerEvent<Node>;
    if (ev.type === "bookmark") continue;
    if (ev.type === "synced") {
      yield { type: "synced", nodes: ev.objects };
      continue;
    }
    yield {
      type: ev.type,
      name: ev.object.metadata.name,
      ips: internalIPs(ev.object),
      node: ev.object,
    };
  }
}
