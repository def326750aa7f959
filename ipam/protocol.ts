/**
 * The node agent's IPAM socket protocol: HTTP/1.1 with JSON bodies on a unix socket
 * (default `/run/ohno/ipam.sock`, mode 0600). The plugin ({@link AgentClient}) is the
 * client, `ohno daemon` the server. Documented for people in docs/ipam-socket.md; change
 * both together.
 * @module
 */

import type { Attachment } from "./records.ts";

/**
 * The largest request body the agent reads (bytes); a larger one is answered 413 without
 * reading it. Room for a GC list of about a thousand attachments with the longest IDs.
 */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/**
 * The longest value of each string field (characters), from Kubernetes' own limits
 * (a pod name is a DNS subdomain, a namespace a DNS label, a UID a UUID with room).
 * `containerID` and `ifname`: `MAX_CONTAINER_ID_LENGTH`, `MAX_IFNAME_LENGTH` (records.ts).
 * A longer value is refused with 400 `invalid` naming the field.
 */
export const FIELD_LIMITS = {
  network: 253,
  netns: 4096,
  podNamespace: 63,
  podName: 253,
  podUid: 128,
  /** Each entry of `requestedIPs` (an address, optionally with a prefix length). */
  requestedIP: 64,
} as const;

/** At most this many `requestedIPs`: one per family. */
export const MAX_REQUESTED_IPS = 2;

/** `POST /v1/allocate` */
export interface AllocateRequest extends Attachment {
  /** The CNI network name (the agent refuses a network it does not serve). */
  network: string;
  /** CNI_NETNS, for the record. */
  netns?: string;
  podNamespace?: string;
  podName?: string;
  /** K8S_POD_UID: what the agent's GC matches against live pods (never the pod name). */
  podUid?: string;
  /** Static addresses wanted (`IP=` in CNI_ARGS, the `ips` capability), at most one per family. */
  requestedIPs?: string[];
}

export interface WireIp {
  /** Address with prefix length, e.g. `10.244.1.5/24`. */
  address: string;
  gateway?: string;
}

export interface WireRoute {
  dst: string;
  gw?: string;
}

export interface AllocateResponse {
  ips: WireIp[];
  /** Routes the pod should have (e.g. the default route); merged with the config's. */
  routes?: WireRoute[];
}

/**
 * `POST /v1/release`: idempotent; releasing nothing is success. Only this node's
 * attachments: another node's is not found here, and nothing is freed.
 */
export interface ReleaseRequest extends Attachment {
  network: string;
}
export interface ReleaseResponse {
  released: string[];
  /** Set when nothing was released: says that this node holds nothing for the attachment. */
  message?: string;
}

/** `POST /v1/check`: does the attachment hold these addresses? */
export interface CheckRequest extends Attachment {
  network: string;
}
export interface CheckResponse {
  ips: WireIp[];
}

/** `POST /v1/gc`: release this node's attachments of `network` not listed. */
export interface GcRequest {
  network: string;
  validAttachments: Attachment[];
}
export interface GcResponse {
  released: (Attachment & { ips: string[] })[];
  errors: string[];
}

/** `GET /v1/status`: 200 when ADD can be served. */
export interface StatusResponse {
  ready: boolean;
  node?: string;
  /** Free addresses per pool (text, since IPv6 counts exceed JSON numbers). */
  pools?: { cidr: string; free: string }[];
  message?: string;
}

/**
 * `POST /v1/cni`: the whole CNI call (ADD, DEL or CHECK) done by the agent, in-process:
 * the plugin forwards its environment (`CNI_*`) and the config it read from stdin, and
 * prints the answer. A CNI error is an answer too (`exitCode` 1, `stdout` the error
 * document); protocol errors are error bodies as for every route. `elsewhere` (421):
 * the agent cannot open the pod's namespace (`CNI_NETNS` is not visible in its mount
 * namespace); nothing was done, and the plugin does the call itself.
 */
export interface CniRequest {
  env: Record<string, string>;
  config: string;
}
export interface CniResponse {
  exitCode: number;
  /** The one JSON document the plugin prints; absent when it prints nothing (DEL, CHECK). */
  stdout?: unknown;
}

/** The environment variables the plugin forwards to the agent with `POST /v1/cni`. */
export const FORWARDED_ENV = [
  "CNI_COMMAND",
  "CNI_CONTAINERID",
  "CNI_NETNS",
  "CNI_IFNAME",
  "CNI_ARGS",
  "CNI_PATH",
  /** Test-only fault injection (docs/cni.md), so the agent's path can be tested as the plugin's. */
  "OHNO_TEST_FAULT",
] as const;

/**
 * The routes, one per verb: its method and path here, its request and response types in
 * {@link Messages}. The client calls and the server answers through this table only.
 */
export const ROUTES = {
  allocate: { method: "POST", path: "/v1/allocate" },
  release: { method: "POST", path: "/v1/release" },
  check: { method: "POST", path: "/v1/check" },
  gc: { method: "POST", path: "/v1/gc" },
  status: { method: "GET", path: "/v1/status" },
  cni: { method: "POST", path: "/v1/cni" },
} as const;

export type Verb = keyof typeof ROUTES;

/** Each verb's request body (`undefined`: none) and response body. */
export interface Messages {
  allocate: { req: AllocateRequest; res: AllocateResponse };
  release: { req: ReleaseRequest; res: ReleaseResponse };
  check: { req: CheckRequest; res: CheckResponse };
  gc: { req: GcRequest; res: GcResponse };
  status: { req: undefined; res: StatusResponse };
  cni: { req: CniRequest; res: CniResponse };
}

/** The verb a request's method and path name, or undefined. */
export function verbOf(method: string, path: string): Verb | undefined {
  const verbs = Object.keys(ROUTES) as Verb[];
  return verbs.find((v) => ROUTES[v].path === path && ROUTES[v].method === method);
}

/** Error kinds in `{"error": {"kind", "message"}}` bodies, with their HTTP status. */
export const ERROR_KINDS = {
  /** The request is malformed or names something invalid. */
  invalid: 400,
  /** The attachment holds nothing (check). */
  "not-found": 404,
  /** The attachment already holds addresses (allocate twice). */
  exists: 409,
  /** A requested static address cannot be given. */
  unavailable: 409,
  /** No address left in the node's blocks and no block left in the pools. */
  exhausted: 507,
  /** The agent is up but cannot serve yet (starting, etcd unreachable): try again. */
  "not-ready": 503,
  /** `cni` only: the agent cannot reach the pod's namespace; the plugin does the call. */
  elsewhere: 421,
  /** Anything else; details in the message. */
  internal: 500,
} as const;
export type ErrorKind = keyof typeof ERROR_KINDS;

export interface ErrorBody {
  error: { kind: ErrorKind; message: string };
}
