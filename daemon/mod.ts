/**
 * daemon/: the node agent (`ohno daemon`).
 *
 * - `config.ts`: configuration from file, environment and flags (`loadDaemonConfig`,
 *   `DAEMON_FLAGS`);
 * - `nodeip.ts`: this node's address (`resolveNodeIPs`);
 * - `routing/`: the backend seam, the pure route diff, host-gw, the `RouteSync` loop;
 * - `masq.ts`: masquerade in nftables table `inet ohno`;
 * - `health.ts`, `metrics.ts`: `/healthz`, `/readyz`, `/metrics`;
 * - `k8s/`: the Kubernetes client (import `./k8s/mod.ts` lazily, only when Kubernetes is on).
 *
 * The start-up wiring, the IPAM server and host install come with the cluster IPAM.
 * See docs/daemon.md.
 *
 * Imports: lib/, netns/, ipam/. Never cni/ (the plugin is a separate process).
 * @module
 */
export * from "./config.ts";
export * from "./nodeip.ts";
export * from "./routing/mod.ts";
export * from "./masq.ts";
export * from "./health.ts";
export * from "./metrics.ts";
