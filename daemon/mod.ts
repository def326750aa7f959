/**
 * daemon/: the node agent (`ohno daemon`).
 *
 * - `settings.ts`: every setting declared once (key, flag, environment, parser, default,
 *   doc line), with `settings_parse.ts` (the value parsers) and `settings_doc.ts` (the docs
 *   table); `config.ts` reads file, environment and flags from it (`loadDaemonConfig`) and
 *   checks the cross-field rules (`validate`);
 * - `nodeip.ts`: this node's address (`resolveNodeIPs`);
 * - `routing/`: the backend seam, the pure route diff, host-gw, vxlan, bgp, the `RouteSync`
 *   loop;
 * - `masq.ts`: masquerade in nftables table `inet ohno`;
 * - `health.ts`, `metrics.ts`: `/healthz`, `/readyz`, `/metrics`;
 * - `k8s/`: the Kubernetes client (import `./k8s/mod.ts` lazily, only when Kubernetes is on);
 * - `ipamserver.ts`: the IPAM socket (docs/ipam-socket.md) on the cluster IPAM;
 * - `install.ts`: the plugin binary and conflist, written by rename;
 * - `agent.ts`: `runAgent` — the start-up order and the loops — and `cleanupAgent`.
 *
 * See docs/daemon.md.
 *
 * This entry re-exports nothing: code imports the file that defines a name (one way for
 * every folder; daemon/k8s/mod.ts is the one exception, the chunk the agent loads lazily).
 *
 * - `podwork.ts`: a plugin's whole CNI call run in-process (`POST /v1/cni`).
 *
 * Imports: lib/, netns/, ipam/; cni/mod.ts only from `podwork.ts`, lazily (the agent runs
 * the plugin's own verbs; cni/ never imports daemon/).
 * @module
 */
