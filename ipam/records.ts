/**
 * What IPAM stores about an allocation, shared by the embedded (ranges) and the cluster
 * (pools and blocks) allocators, so `ohno ipam ls` reads both alike.
 * @module
 */

/** One attachment of a workload to the network: the owner of its addresses. */
export interface Attachment {
  containerID: string;
  ifname: string;
}

/** Stored under the address's key. */
export interface AddressRecord extends Attachment {
  /** The address without prefix length. */
  ip: string;
  podNamespace?: string;
  podName?: string;
  /** K8S_POD_UID, when the runtime sent it. */
  podUid?: string;
  /** The node that allocated it (cluster IPAM). */
  node?: string;
  /** ISO 8601 time of allocation. */
  createdAt: string;
}

/** Stored under the handle's key: every address one attachment holds. */
export interface HandleRecord extends Attachment {
  ips: string[];
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  node?: string;
  createdAt: string;
}

/** One allocated address as `ohno ipam ls` shows it, from either allocator. */
export interface AllocationRow {
  ip: string;
  node: string;
  pool: string;
  block: string;
  containerID: string;
  ifname: string;
  podNamespace?: string;
  podName?: string;
  createdAt: string;
}

/** The row of a stored address record, placed by its allocator. */
export function allocationRow(
  rec: AddressRecord,
  where: { node: string; pool: string; block: string },
): AllocationRow {
  return {
    ip: rec.ip,
    ...where,
    containerID: rec.containerID,
    ifname: rec.ifname,
    createdAt: rec.createdAt,
    ...(rec.podNamespace ? { podNamespace: rec.podNamespace } : {}),
    ...(rec.podName ? { podName: rec.podName } : {}),
  };
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;
/**
 * The longest container ID ohno takes (the CNI face refuses longer ones with error 4):
 * runtimes use 64 hex digits, and a store key stays about 1 KB.
 */
export const MAX_CONTAINER_ID_LENGTH = 1024;
const IFNAME_RE = /^[^\s/:]{1,15}$/;

/**
 * Checks an attachment before it becomes part of a store key. The CNI face validates
 * earlier with CNI error codes; this guards the agent's socket and the CLI.
 */
export function checkAttachment(a: Attachment): void {
  if (!ID_RE.test(a.containerID) || a.containerID.length > MAX_CONTAINER_ID_LENGTH) {
    throw new TypeError(`container ID ${JSON.stringify(a.containerID)} is not valid`);
  }
  if (!IFNAME_RE.test(a.ifname) || a.ifname === "." || a.ifname === "..") {
    throw new TypeError(`interface name ${JSON.stringify(a.ifname)} is not valid`);
  }
}

/** `containerID/ifname`: the handle's key suffix. */
export function handleId(a: Attachment): string {
  return `${a.containerID}/${a.ifname}`;
}

export function sameAttachment(a: Attachment, b: Attachment): boolean {
  return a.containerID === b.containerID && a.ifname === b.ifname;
}
