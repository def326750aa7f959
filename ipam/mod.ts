/**
 * ipam/: address management.
 *
 * - `addr.ts`: IPv4/IPv6 math on bigints (ipaddr.js for parsing and printing);
 * - `store.ts`: the Store seam (KV with revisions and compare-then-write transactions),
 *   with `memory.ts` and `local.ts` (the local file store) below it, and `atomically`;
 * - `pick.ts`: the round-robin choice of the next free address;
 * - `ranges.ts`: the embedded, host-local shaped allocator (the plugin without an agent);
 * - `attachments.ts`: an attachment's records (address records and handle) in one
 *   transaction, and its release and GC: the shape both allocators share;
 * - `cluster.ts`: cluster IPAM's one import — pools → node blocks → addresses, node release,
 *   GC, reservations, the consistency check, and `peers()`/`watchPeers()` for the routing
 *   backends. The node agent calls: `addPool`, `registerNode(node, {ips})`,
 *   `claimBlocks(node)`, `allocate({node, containerID, ifname, …})`, `get` and `release`
 *   with its own `{node}` scope, `gc(node, valid)`, `releaseNode(node)`,
 *   `watchPeers({signal})`. Schema: SCHEMA.md. Its parts, in `cluster/`: `keys.ts` (the key
 *   schema, keys back to addresses), `types.ts` (the records), `blocks.ts` (pools, block
 *   arithmetic, claims), `nodes.ts` (node records, node release), `choose.ts` (the pure
 *   per-family choice of an address), `allocate.ts` (its transaction), `handles.ts` (get,
 *   release, GC, list), `reservations.ts`, `check.ts` (the pure check over a snapshot),
 *   `peers.ts` (the nodes and blocks as the routing backends see them, an in-memory view
 *   changed by the watch: one list, then per-node changes per burst), `ipam.ts` (the
 *   `ClusterIpam` object over them);
 * - `etcd.ts`: the etcd store (import it lazily: it loads gRPC);
 * - `etcdhttp.ts`: the etcd store over etcd's JSON gateway (fetch; the CLI's);
 * - `etcdcommon.ts`: what both etcd stores share (no npm import);
 * - `protocol.ts`, `client.ts`, `unixhttp.ts`: the node agent's socket protocol (its route
 *   table, `ROUTES`, is the one both ends use), the plugin's client, and its one-request
 *   HTTP/1.1 transport over the socket.
 *
 * This entry re-exports nothing: code imports the file that defines a name (one way for
 * every folder; daemon/k8s/mod.ts is the one exception, the chunk the agent loads lazily).
 *
 * Imports: lib/ and npm packages only. Never cni/ or daemon/.
 * @module
 */
