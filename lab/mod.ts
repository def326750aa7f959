/**
 * lab/: a simulated cluster on one machine, in network namespaces (`ohno lab`).
 *
 * - `topology.ts`: the underlay (lab namespace with bridge, N node namespaces, an outside
 *   host): `labUp`, `labOpen`, `labDown`, `listLabs`;
 * - `lab.ts`: etcd in the lab namespace, an `ohno daemon` per node, pods added as a
 *   runtime adds them, pings, status, fault drills (agent kill/start, etcd stop/start);
 * - `runtime.ts`: a runtime's CNI side (libcni's conflist semantics);
 * - `demo.ts`: `ohno lab demo`, the README's main job.
 *
 * Imports: anything of ohno's except cli/.
 * @module
 */
export * from "./topology.ts";
export * from "./runtime.ts";
export * as lab from "./lab.ts";
