/**
 * lab/: a simulated cluster on one machine, in network namespaces (`ohno lab`).
 *
 * - `topology.ts`: the underlay (lab namespace with bridge, N node namespaces, an outside
 *   host): `labUp`, `labOpen`, `labDown`, `listLabs`;
 * - `lab.ts`: etcd in the lab namespace, an `ohno daemon` per node, pods added as a
 *   runtime adds them, pings, status, fault drills (agent kill/start, etcd stop/start);
 * - `runtime.ts`: a runtime's CNI side (libcni's conflist semantics);
 * - `bgprouter.ts`: BIRD in the routed underlay's router namespace (a top-of-rack peer);
 * - `kube.ts`: `--kubernetes`: real Kubernetes on the underlay (control plane in the lab
 *   namespace; per node containerd and a kubelet in a mount namespace of its own), images
 *   imported without a registry; ohno then comes from its manifest (tests/e2e/);
 * - `demo.ts`: `ohno lab demo`, the README's main job.
 *
 * This entry re-exports nothing: code imports the file that defines a name (one way for
 * every folder; daemon/k8s/mod.ts is the one exception, the chunk the agent loads lazily).
 *
 * Imports: anything of ohno's except cli/.
 * @module
 */
