/**
 * Opening the datastore a configuration names: the node agent and `ohno ipam` share it.
 * The etcd client (gRPC) is imported only when etcd is asked for.
 * @module
 */

import { LocalStore } from "../ipam/local.ts";
import type { Store } from "../ipam/store.ts";
import type { DatastoreConfig } from "./config.ts";

export async function openDatastore(ds: DatastoreConfig): Promise<Store> {
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
