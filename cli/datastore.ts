/**
 * Where the admin CLI finds the address store: exactly as the node agent does (flags,
 * then environment, then its config file; docs/cli.md, docs/daemon.md), so `ohno ipam`
 * on a node sees what the agent sees.
 * @module
 */

import {
  DaemonConfigError,
  type DaemonFlags,
  type DatastoreConfig,
  loadDaemonConfig,
} from "../daemon/config.ts";
import { CliError } from "./errors.ts";

export { openDatastore } from "../daemon/datastore.ts";

export type DatastoreFlags = Pick<
  DaemonFlags,
  "datastore" | "etcdEndpoints" | "etcdCa" | "etcdCert" | "etcdKey" | "dataDir" | "config"
>;

/** Resolves the datastore settings. */
export function resolveDatastore(flags: DatastoreFlags): DatastoreConfig {
  try {
    return loadDaemonConfig({ flags }).datastore;
  } catch (e) {
    if (e instanceof DaemonConfigError) throw new CliError(e.message, 2);
    throw e;
  }
}
