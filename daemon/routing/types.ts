/**
 * The routing seam: what every backend (host-gw and vxlan now; bgp later) is told and what
 * it reports. A backend is told the local node and the set of peers and reconciles the
 * kernel to them; watching (etcd), timing (periodic resync) and metrics live in
 * {@link RouteSync}, shared by all backends.
 * @module
 */

/** A node as routing sees it. */
export interface NodeRouting {
  /** The node's name (the Kubernetes Node name). */
  node: string;
  /** The node's own (underlay) addresses: one IPv4 and/or one IPv6; the first of each family is used. */
  ips: string[];
  /** The pod-address blocks the node owns (CIDRs, IPv4 and IPv6). */
  blocks: string[];
}

/** The node this agent runs on. */
export type LocalNode = NodeRouting;
/** Another node of the cluster. */
export interface Peer extends NodeRouting {
  /** What the node published for its backend (vxlan: its VTEP MACs), as in its etcd record. */
  backend?: Record<string, unknown>;
}

/** What a backend reconciles the kernel to. */
export interface RoutingState {
  local: LocalNode;
  peers: readonly Peer[];
}

/** A route ohno wants: the peer block `dst` through the peer's address `via`. */
export interface WantedRoute {
  family: 4 | 6;
  /** Canonical CIDR (`10.244.2.0/24`, `fd10:244:0:2::/64`). */
  dst: string;
  /** Canonical next-hop address. */
  via: string;
  /** The peer it leads to (for logs and reports). */
  node: string;
  /** Out of this device, next hop on-link (vxlan); absent: the kernel finds the device. */
  dev?: string;
}

/** A route as read from the kernel (a netlink route dump of one table), normalised. */
export interface KernelRoute {
  family: 4 | 6;
  /** Canonical CIDR (`default` becomes `0.0.0.0/0` / `::/0`, a host route gets /32 or /128). */
  dst: string;
  via?: string;
  dev?: string;
  /** The metric (0 for IPv4 routes that show none). */
  metric: number;
  /** `ip`'s protocol text: a number (`111`) or a name from rt_protos (`kernel`, `static`). */
  protocol: string;
  /** Route type when not unicast (`blackhole`, `unreachable`, …). */
  type?: string;
}

/** Why a wanted block got no route. */
export interface SkippedBlock {
  node: string;
  block: string;
  reason: string;
}

/** A wanted route whose destination is held by a route ohno does not own: left alone. */
export interface RouteConflict {
  route: WantedRoute;
  foreign: KernelRoute;
}

/** A route the kernel refused. */
export interface FailedRoute {
  op: "replace" | "delete";
  dst: string;
  node?: string;
  /** The next hop of a refused replace. */
  via?: string;
  /**
   * `next-hop-unreachable` when the kernel refused the next hop as not on any link of the
   * node (host-gw across subnets); absent for other errors.
   */
  reason?: "next-hop-unreachable";
  /** What went wrong, in words (with the kernel's own message). */
  error: string;
}

/** What one reconcile did. */
export interface ReconcileReport {
  added: WantedRoute[];
  replaced: WantedRoute[];
  deleted: KernelRoute[];
  /** Wanted routes already right in the kernel. */
  unchanged: number;
  conflicts: RouteConflict[];
  skipped: SkippedBlock[];
  failed: FailedRoute[];
  /** Routes ohno owns in the kernel after this reconcile, per family. */
  programmed: { 4: number; 6: number };
  /**
   * vxlan only: neighbour and FDB entries wanted, how many commands changed them, and the
   * peers whose published VNI or UDP port differ from this node's.
   */
  vxlan?: { neighbours: number; fdb: number; changed: number; mismatches: VxlanMismatch[] };
}

/**
 * A peer whose VXLAN settings (published in its etcd record) differ from this node's: no
 * tunnel between the two can work (a device drops other VNIs and listens on its own port
 * only), so no VXLAN path to it is programmed.
 */
export interface VxlanMismatch {
  node: string;
  /** The peer's published VNI and port. */
  vni: number;
  port: number;
  /** This node's. */
  localVni: number;
  localPort: number;
}

/** A routing mode. */
export interface Backend {
  /** `host-gw`, … (for logs and metrics). */
  readonly type: string;
  /**
   * Makes the kernel hold exactly the routes `state` calls for, among the routes the
   * backend owns, touching no other route. One bad route (a next hop the kernel rejects)
   * is reported in `failed` and does not stop the others; throws only when the kernel
   * cannot be read or programmed at all.
   */
  reconcile(state: RoutingState): Promise<ReconcileReport>;
  /** Removes every route the backend owns (`ohno daemon --cleanup`); returns how many. */
  cleanup(): Promise<number>;
}
