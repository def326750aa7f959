/**
 * Opening the datastore a configuration names: the node agent and `ohno ipam` share it.
 * The etcd clients are imported only when etcd is asked for: the agent's over gRPC (it
 * watches), the CLI's over etcd's JSON gateway (fetch, nothing to load).
 * @module
 */

import { LocalStore } from "../ipam/local.ts";
import type { Store } from "../ipam/store.ts";
import type { DatastoreConfig } from "./config.ts";

/**
 * Opens the datastore; with `onRequest`, every request made through it is reported by
 * operation (`get`, `list`, `revision`, `txn`, `watch`), for the agent's metrics.
 */
export async function openDatastore(
  ds: DatastoreConfig,
  opts: { onRequest?: (op: string) => void; http?: boolean } = {},
): Promise<Store> {
  const store = await open(ds, opts.http ?? false);
  return opts.onRequest ? counted(store, opts.onRequest) : store;
}

/**
 * `http`: etcd through its JSON gateway with fetch (ipam/etcdhttp.ts: no gRPC client to
 * load, no watch), unless `serverName` names something other than an endpoint's host,
 * which only the gRPC client can check.
 */
async function open(ds: DatastoreConfig, http: boolean): Promise<Store> {
  if (ds.type === "local") return new LocalStore(ds.dataDir);
  const e = ds.etcd!;
  const { hostOf } = await import("../ipam/etcdcommon.ts");
  if (http && (!e.serverName || e.endpoints.every((u) => hostOf(u) === e.serverName))) {
    const { EtcdHttpStore } = await import("../ipam/etcdhttp.ts");
    return new EtcdHttpStore({ endpoints: e.endpoints, ca: e.ca, cert: e.cert, key: e.key });
  }
  const { EtcdStore } = await import("../ipam/etcd.ts");
  return new EtcdStore({
    endpoints: ds.etcd!.endpoints,
    ca: ds.etcd!.ca,
    cert: ds.etcd!.cert,
    key: ds.etcd!.key,
    serverName: ds.etcd!.serverName,
  });
}

/** The same store, reporting each request before it is made. */
function counted(s: Store, on: (op: string) => void): Store {
  const c: Store = {
    kind: s.kind,
    location: s.location,
    get: (key) => (on("get"), s.get(key)),
    list: (prefix) => (on("list"), s.list(prefix)),
    revision: () => (on("revision"), s.revision()),
    commit: (txn) => (on("txn"), s.commit(txn)),
    close: () => s.close(),
    [Symbol.asyncDispose]: () => s.close(),
  };
  if (s.watch) c.watch = (prefix, o) => (on("watch"), s.watch!(prefix, o));
  if (s.exclusive) c.exclusive = (fn) => s.exclusive!(fn);
  return c;
}
