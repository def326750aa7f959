/**
 * Cluster IPAM: pools → node blocks → addresses, shared by every node of a cluster
 * through a Store (etcd in a cluster; the local store works for one machine). Key schema
 * in ipam/SCHEMA.md; the parts in ipam/cluster/ (see ipam/mod.ts). This file is the one
 * import for the rest of ohno.
 *
 * - A node claims one block per pool (idempotent: a restarted node gets its own blocks
 *   back) and another when its blocks of a family are full. A block's first usable
 *   address is the node bridge's gateway; pods get the rest.
 * - An attachment (container ID + ifname) owns the addresses of one pod interface: one
 *   per family the pools cover.
 * - Every change is one compare-then-write transaction: a block can never have two
 *   owners, an address never two handles; a decision made on stale reads fails its
 *   compares and is made again.
 * @module
 */

export { ClusterIpam } from "./cluster/ipam.ts";
export { addressOfIpKey } from "./cluster/keys.ts";
export type { CheckReport, Problem } from "./cluster/check.ts";
export type { Reservation } from "./cluster/reservations.ts";
export type { GroupEvent } from "./cluster/group.ts";
export type * from "./cluster/types.ts";
export {
  applyPeerChanges,
  type Peer,
  type PeerChange,
  type PeerWatchStats,
} from "./cluster/peers.ts";
