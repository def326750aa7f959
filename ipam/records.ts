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
const IFNAME_RE = /^[^\s/:]{1,15}$/;

/**
 * The longest container ID ohno takes (`CNI_CONTAINERID`, the socket's `containerID`):
 * decided once, here, for the plugin's environment check and the agent's socket alike.
 * Runtimes use 64 hex characters; the margin is for IDs made by other tools.
 */
export const MAX_CONTAINER_ID_LENGTH = 1024;
/** The longest interface name Linux takes (IFNAMSIZ - 1). */
export const MAX_IFNAME_LENGTH = 15;

/** A value for an error message: quoted, and cut short when long (never echo megabytes). */
export function quoteShort(v: unknown, max = 64): string {
  const s = typeof v === "string" ? v : String(v);
  return s.length > max
    ? `${JSON.stringify(s.slice(0, max))}… (${s.length} characters)`
    : JSON.stringify(s);
}

/**
 * Checks an attachment before it becomes part of a store key. The CNI face validates
 * earlier with CNI error codes; this guards the agent's socket and the CLI.
 */
export function checkAttachment(a: Attachment): void {
  if (typeof a.containerID !== "string") {
    throw new TypeError(`containerID must be a string`);
  }
  if (a.containerID.length > MAX_CONTAINER_ID_LENGTH) {
    throw new TypeError(
      `containerID is ${a.containerID.length} characters long; at most ${MAX_CONTAINER_ID_LENGTH} are allowed`,
    );
  }
  if (!ID_RE.test(a.containerID)) {
    throw new TypeError(`container ID ${quoteShort(a.containerID)} is not valid`);
  }
  if (typeof a.ifname !== "string") throw new TypeError(`ifname must be a string`);
  if (a.ifname.length > MAX_IFNAME_LENGTH) {
    throw new TypeError(
      `ifname is ${a.ifname.length} characters long; at most ${MAX_IFNAME_LENGTH} are allowed`,
    );
  }
  if (!IFNAME_RE.test(a.ifname) || a.ifname === "." || a.ifname === "..") {
    throw new TypeError(`interface name ${quoteShort(a.ifname)} is not valid`);
  }
}

/** `containerID/ifname`: the handle's key suffix. */
export function handleId(a: Attachment): string {
  return `${a.containerID}/${a.ifname}`;
}

export function sameAttachment(a: Attachment, b: Attachment): boolean {
  return a.containerID === b.containerID && a.ifname === b.ifname;
}
