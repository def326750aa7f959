/**
 * daemon/routing/: how pod traffic reaches other nodes.
 *
 * - `types.ts`: the backend seam (`Backend`: told the local node and the peers, reconciles
 *   the kernel) and its report;
 * - `diff.ts`: pure logic: peer events → peer set → wanted routes → plan against the kernel;
 * - `hostgw.ts`: the host-gw backend (`<peer block> via <peer node address>`, proto 111);
 * - `vxlan.ts`: the vxlan backend (a VXLAN device per underlay family, per-peer route,
 *   neighbour and FDB entry; host-gw routes to same-subnet peers with directRouting);
 * - `bgp.ts`, `bird.ts`: the bgp backend (BIRD 2 configured from the cluster's state, run and
 *   supervised by the agent; the sessions per topology; `birdc` output read back);
 * - `sync.ts`: the loop all backends share (events, periodic resync, first-sync signal).
 *
 * This entry re-exports nothing: code imports the file that defines a name (one way for
 * every folder; daemon/k8s/mod.ts is the one exception, the chunk the agent loads lazily).
 *
 * Imports: lib/, netns/, ipam/addr.ts. Never cni/.
 * @module
 */
