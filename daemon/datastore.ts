/**
 * Opening the datastore a configuration names: the node agent and `ohno ipam` share it.
 * The etcd client (gRPC) is imported only when etcd is asked for.
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
  opts: { onRequest?: (op: string) => void } = {},
): Promise<Store> {
  const store = await open(ds);
  return opts.onRequest ? counted(store, opts.onRequest) : store;
}

async function open(ds: DatastoreConfig): Promise<Store> {
  if (ds.type === "local") return new LocalStore(ds.dataDir);
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
