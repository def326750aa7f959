/**
 * deploy/lab/: a simulated cluster on one machine, in network namespaces.
 *
 * - `topology.ts`: the underlay (lab namespace with bridge, N node namespaces, an outside
 *   host): `labUp`, `labOpen`, `labDown`, `listLabs`.
 *
 * The agents, etcd and pods on top of it (`ohno lab …`) come with the node-agent wiring.
 * Imports: anything of ohno's except cli/.
 * @module
 */
export * from "./topology.ts";
