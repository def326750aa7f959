/**
 * daemon/k8s/: the node agent's Kubernetes integration, on a small fetch-based client.
 *
 * - `config.ts`: in-cluster config or a kubeconfig (token or client certificate);
 * - `client.ts`: get, list, watch (resourceVersion, bookmarks, 410 Gone), patch, delete;
 * - `informer.ts`: list-then-watch kept going (relist on 410, deletions in gaps reported);
 * - `nodes.ts`: node IP discovery, `NetworkUnavailable=False`, the Node watch;
 * - `pods.ts`: the pods on this node, for garbage collection.
 *
 * The one mod.ts that re-exports: it is the chunk the agent loads lazily, only when
 * Kubernetes is on (never by the CNI plugin). Imports: ipam/addr.ts, npm yaml.
 * @module
 */
export * from "./config.ts";
export * from "./client.ts";
export * from "./informer.ts";
export * from "./nodes.ts";
export * from "./pods.ts";
