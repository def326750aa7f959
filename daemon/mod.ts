/**
 * daemon/: the node agent (`ohno daemon`).
 *
 * - `config.ts`: configuration from file, environment and flags (`loadDaemonConfig`,
 *   `DAEMON_FLAGS`);
 * - `nodeip.ts`: this node's address (`resolveNodeIPs`);
 * - `routing/`: the backend seam, the pure route diff, host-gw, the `RouteSync` loop;
 * - `masq.ts`: masquerade in nftables table `inet ohno`;
 * - `health.ts`, `metrics.ts`: `/healthz`, `/readyz`, `/metrics`;
 * - `k8s/`: the Kubernetes client (import `./k8s/mod.ts` lazily, only when Kubernetes is on);
 * - `ipamserver.ts`: the IPAM socket (docs/ipam-socket.md) on the cluster IPAM;
 * - `install.ts`: the plugin binary and conflist, written by rename;
 * - `agent.ts`: `runAgent` — the start-up order and the loops — and `cleanupAgent`.
 *
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
export * from "./ipamserver.ts";
export * from "./install.ts";
export * from "./agent.ts";
