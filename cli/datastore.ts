/**
 * Where the admin CLI finds the address store: flags, then environment, then the node
 * agent's config file, then defaults (docs/cli.md).
 *
 * | setting | flag | environment | config file (`datastore.…`) |
 * | --- | --- | --- | --- |
 * | type | `--datastore etcd\|local` | `OHNO_DATASTORE` | `type` |
 * | etcd endpoints | `--etcd-endpoints a,b` | `OHNO_ETCD_ENDPOINTS` | `etcd.endpoints` |
 * | CA / cert / key | `--etcd-ca` … | `OHNO_ETCD_CA` … | `etcd.ca` … |
 * | local dir | `--data-dir` | `OHNO_DATA_DIR` | `dataDir` |
 * | config file | `--config` | `OHNO_CONFIG` | default `/etc/ohno/ohno.json` when it exists |
 * @module
 */

import type { Store } from "../ipam/store.ts";
import { DEFAULT_DATA_DIR, LocalStore } from "../ipam/local.ts";
import { CliError } from "./errors.ts";

export const DEFAULT_CONFIG = "/etc/ohno/ohno.json";

export interface DatastoreFlags {
  datastore?: string;
  etcdEndpoints?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  dataDir?: string;
  config?: string;
}

/** The `datastore` section of the agent's config file (docs/daemon.md). */
export interface DatastoreConfig {
  type: "etcd" | "local";
  etcd?: { endpoints: string[]; ca?: string; cert?: string; key?: string; serverName?: string };
  dataDir?: string;
}

function readConfigFile(path: string, explicit: boolean): Partial<DatastoreConfig> {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (!explicit && e instanceof Deno.errors.NotFound) return {};
    throw new CliError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  try {
    const doc = JSON.parse(text) as { datastore?: Partial<DatastoreConfig> };
    return doc.datastore ?? {};
  } catch (e) {
    throw new CliError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Resolves the datastore settings (exported for tests). */
export function resolveDatastore(
  flags: DatastoreFlags,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): DatastoreConfig {
  const configPath = flags.config ?? env.OHNO_CONFIG;
  const file = readConfigFile(configPath ?? DEFAULT_CONFIG, configPath !== undefined);
  const endpointsText = flags.etcdEndpoints ?? env.OHNO_ETCD_ENDPOINTS;
  const endpoints = endpointsText
    ? endpointsText.split(",").map((s) => s.trim()).filter(Boolean)
    : file.etcd?.endpoints ?? [];
  const type = flags.datastore ?? env.OHNO_DATASTORE ?? file.type ??
    (endpoints.length ? "etcd" : "local");
  if (type !== "etcd" && type !== "local") {
    throw new CliError(`--datastore ${JSON.stringify(type)} is not etcd or local`, 2);
  }
  if (type === "local") {
    return {
      type,
      dataDir: flags.dataDir ?? env.OHNO_DATA_DIR ?? file.dataDir ?? DEFAULT_DATA_DIR,
    };
  }
  if (endpoints.length === 0) {
    throw new CliError(
      "the etcd datastore needs endpoints: --etcd-endpoints, OHNO_ETCD_ENDPOINTS or datastore.etcd.endpoints in the config file",
      2,
    );
  }
  const pick = (f: string | undefined, e: string | undefined, c: string | undefined) => f ?? e ?? c;
  const etcd: NonNullable<DatastoreConfig["etcd"]> = { endpoints };
  const ca = pick(flags.etcdCa, env.OHNO_ETCD_CA, file.etcd?.ca);
  const cert = pick(flags.etcdCert, env.OHNO_ETCD_CERT, file.etcd?.cert);
  const key = pick(flags.etcdKey, env.OHNO_ETCD_KEY, file.etcd?.key);
  if (ca) etcd.ca = ca;
  if (cert) etcd.cert = cert;
  if (key) etcd.key = key;
  if (file.etcd?.serverName) etcd.serverName = file.etcd.serverName;
  return { type, etcd };
}

/** Opens the store the settings name (etcd's client is loaded only here). */
export async function openDatastore(cfg: DatastoreConfig): Promise<Store> {
  if (cfg.type === "local") return new LocalStore(cfg.dataDir ?? DEFAULT_DATA_DIR);
  const { EtcdStore } = await import("../ipam/etcd.ts");
  return new EtcdStore({
    endpoints: cfg.etcd!.endpoints,
    ca: cfg.etcd!.ca,
    cert: cfg.etcd!.cert,
    key: cfg.etcd!.key,
    serverName: cfg.etcd!.serverName,
  });
}
