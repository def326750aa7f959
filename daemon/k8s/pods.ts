/**
 * The pods on this node, for garbage collection of allocations whose pod is gone.
 *
 * The policy (grace period, what counts as "gone") belongs to the caller. What the API
 * can tell it: each pod's namespace, name and UID, its phase, its addresses, and its app
 * containers' IDs. Note that the CNI container ID (`CNI_CONTAINERID`) is the pod
 * *sandbox*'s ID, which the Pod API does not show; match allocations by pod UID
 * (`K8S_POD_UID` in `CNI_ARGS`, sent by containerd and CRI-O) or by namespace/name plus
 * address, never by name alone.
 * @module
 */

import { formatIp, parseIp } from "../../ipam/addr.ts";
import type { KubeClient, KubeObject } from "./client.ts";
import { namedError } from "../../lib/errors.ts";

interface Pod extends KubeObject {
  spec?: { nodeName?: string; hostNetwork?: boolean };
  status?: {
    phase?: string;
    podIP?: string;
    podIPs?: { ip: string }[];
    containerStatuses?: { name: string; containerID?: string }[];
    initContainerStatuses?: { name: string; containerID?: string }[];
  };
}

/** One pod as garbage collection sees it. */
export interface PodInfo {
  namespace: string;
  name: string;
  uid: string;
  nodeName: string;
  /** Pending, Running, Succeeded, Failed, Unknown. */
  phase: string;
  /** Host-network pods hold no ohno address. */
  hostNetwork: boolean;
  /** The pod's addresses (canonical), empty until the sandbox has its network. */
  podIPs: string[];
  /** Container IDs without the runtime prefix (`containerd://abc` → `abc`). */
  containerIDs: string[];
  createdAt?: string;
  /** Set once deletion began (the pod may still be running its grace period). */
  deletingSince?: string;
}

/** The pods on this node and the resourceVersion of the list. */
export interface NodePods {
  pods: PodInfo[];
  resourceVersion: string;
}

/** Strips `containerd://`, `cri-o://`, `docker://`. */
function bareContainerID(id: string): string {
  const i = id.indexOf("://");
  return i >= 0 ? id.slice(i + 3) : id;
}

/** Lists every pod bound to `nodeName` (`fieldSelector=spec.nodeName=NODE`), all namespaces. */
export async function listPodsOnNode(
  client: KubeClient,
  nodeName: string,
  signal?: AbortSignal,
): Promise<NodePods> {
  const list = await client.list<Pod>("/api/v1/pods", {
    query: { fieldSelector: `spec.nodeName=${nodeName}` },
    signal,
  });
  return { pods: list.items.map(podInfo), resourceVersion: list.resourceVersion };
}

/** The GC view of a Pod object. */
function podInfo(p: Pod): PodInfo {
  const ips = new Set<string>();
  for (const t of [p.status?.podIP, ...(p.status?.podIPs ?? []).map((x) => x.ip)]) {
    if (!t) continue;
    try {
      const ip = parseIp(t);
      ips.add(formatIp(ip.family, ip.value));
    } catch {
      // skip junk
    }
  }
  const ids = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]
    .map((c) => c.containerID)
    .filter((x): x is string => !!x)
    .map(bareContainerID);
  return {
    namespace: p.metadata.namespace ?? "default",
    name: p.metadata.name,
    uid: p.metadata.uid ?? "",
    nodeName: p.spec?.nodeName ?? "",
    phase: p.status?.phase ?? "Unknown",
    hostNetwork: p.spec?.hostNetwork === true,
    podIPs: [...ips],
    containerIDs: ids,
    ...(p.metadata.creationTimestamp ? { createdAt: p.metadata.creationTimestamp } : {}),
    ...(p.metadata.deletionTimestamp ? { deletingSince: p.metadata.deletionTimestamp } : {}),
  };
}

/** A pod's `ohno.io/ip-addrs` annotation does not parse. */
export class AnnotationError extends namedError("AnnotationError") {}

/** The annotation through which a pod asks for fixed addresses (docs/daemon.md). */
const IP_ADDRS_ANNOTATION = "ohno.io/ip-addrs";

/**
 * The addresses a pod's `ohno.io/ip-addrs` annotation asks for: a JSON list of addresses
 * (`["10.244.1.50", "fd00:10:244:1::50"]`) or a comma-separated list. Throws an Error
 * naming what is wrong.
 */
export function parseIpAddrsAnnotation(value: string): string[] {
  const text = value.trim();
  let list: unknown;
  if (text.startsWith("[")) {
    try {
      list = JSON.parse(text);
    } catch {
      throw new Error(`${JSON.stringify(value)} is not a JSON list of addresses`);
    }
  } else list = text === "" ? [] : text.split(",").map((t) => t.trim());
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`${JSON.stringify(value)} names no address`);
  }
  return list.map((ip) => {
    if (typeof ip !== "string") throw new Error(`${JSON.stringify(ip)} is not an address`);
    try {
      const p = parseIp(ip.replace(/\/\d+$/, ""));
      return formatIp(p.family, p.value);
    } catch {
      throw new Error(`${JSON.stringify(ip)} is not an IP address`);
    }
  });
}

/**
 * The addresses pod `namespace/name` asks for by annotation: undefined when it asks for
 * none or the API does not know the pod (404). Other API errors are thrown.
 */
export async function podRequestedIPs(
  client: KubeClient,
  namespace: string,
  name: string,
  signal?: AbortSignal,
): Promise<string[] | undefined> {
  let pod: Pod;
  try {
    pod = await client.get<Pod>(
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`,
      // Within the plugin's 2 s bound on the agent: an answer, not the plugin's timeout.
      {
        signal: signal
          ? AbortSignal.any([signal, AbortSignal.timeout(1500)])
          : AbortSignal.timeout(1500),
      },
    );
  } catch (e) {
    if ((e as { status?: number }).status === 404) return undefined;
    throw e;
  }
  const v = pod.metadata.annotations?.[IP_ADDRS_ANNOTATION];
  if (v === undefined) return undefined;
  try {
    return parseIpAddrsAnnotation(v);
  } catch (e) {
    throw new AnnotationError(
      `pod ${namespace}/${name} annotation ${IP_ADDRS_ANNOTATION}: ${(e as Error).message}`,
    );
  }
}
