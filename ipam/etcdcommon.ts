/**
 * What both etcd stores share (ipam/etcd.ts over gRPC, ipam/etcdhttp.ts over the JSON
 * gateway), with no npm import so that the CLI's store loads nothing else: the
 * timeouts, the page size and the paging of a list, the prefix end, the transaction's
 * encoding, TLS file reading and an endpoint's host.
 * @module
 */

import { StoreUnavailableError, type Txn } from "./store.ts";

/** How long a call waits for a connection that etcd answers (ipam/SCHEMA.md). */
export const DIAL_TIMEOUT_MS = 3000;
/** How long a call waits for etcd's answer once connected. */
export const REQUEST_TIMEOUT_MS = 5000;

const enc = new TextEncoder();

/** Keys per page when a store lists a prefix (both etcd stores). */
export const LIST_PAGE = 1000;

/** One page of a range: its rows, whether more follow, the revision read, the last raw key. */
export interface Page<R> {
  rows: R[];
  more: boolean;
  revision: string;
  lastKey: Uint8Array | undefined;
}

/**
 * A prefix listed page by page (both stores): `page(from, revision)` reads the keys from
 * `from` up to the prefix's end, at most a page of them, at `revision` once the first
 * page has fixed it, so the whole list is one snapshot. One answer for a large prefix
 * would outgrow gRPC's 4 MiB message limit (about 15,000 address records).
 */
export async function listInPages<R>(
  prefix: string,
  page: (from: Uint8Array, revision: string | undefined) => Promise<Page<R>>,
): Promise<R[]> {
  const out: R[] = [];
  let from = enc.encode(prefix);
  let revision: string | undefined;
  for (;;) {
    const p = await page(from, revision);
    revision ??= p.revision;
    out.push(...p.rows);
    if (!p.more || !p.lastKey) return out;
    // The smallest key after the last one.
    from = new Uint8Array(p.lastKey.length + 1);
    from.set(p.lastKey);
  }
}

/** An endpoint URL's host, without the brackets of an IPv6 address. */
export function hostOf(endpoint: string): string {
  return new URL(endpoint).hostname.replace(/^\[|\]$/g, "");
}

/** The key after every key with this prefix (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Uint8Array {
  const b = enc.encode(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = b.slice(0, i + 1);
      out[i]!++;
      return out;
    }
  }
  return new Uint8Array([0]);
}

/**
 * A Store transaction as etcd's TxnRequest fields, keys and values encoded with `bytes`
 * (base64 for the JSON gateway, Buffers for etcd3) and enum names with `name` (the
 * gateway wants proto names, `CREATE`; etcd3 its own, `Create`). Shared by both stores.
 */
export function etcdTxn<B>(
  txn: Txn,
  bytes: (x: string | Uint8Array) => B,
  name: (n: "Create" | "Mod" | "Value" | "Equal") => string,
) {
  const eq = name("Equal");
  const compare = (txn.compare ?? []).map((c) => {
    if ("absent" in c) {
      return { key: bytes(c.key), target: name("Create"), result: eq, create_revision: "0" };
    }
    if ("modRevision" in c) {
      return {
        key: bytes(c.key),
        target: name("Mod"),
        result: eq,
        mod_revision: String(c.modRevision),
      };
    }
    return { key: bytes(c.key), target: name("Value"), result: eq, value: bytes(c.value) };
  });
  const success = txn.mutations.map((m) => {
    if ("put" in m) return { request_put: { key: bytes(m.put), value: bytes(m.value) } };
    if ("delete" in m) return { request_delete_range: { key: bytes(m.delete) } };
    return {
      request_delete_range: {
        key: bytes(m.deletePrefix),
        range_end: bytes(prefixEnd(m.deletePrefix)),
      },
    };
  });
  return { compare, success };
}

/** A TLS file named in the options (PEM text), or StoreUnavailableError naming it. */
export function readTlsFile(path: string | undefined, what: string): string | undefined {
  if (!path) return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    throw new StoreUnavailableError(
      `etcd: cannot read the ${what} ${path}: ${(e as Error).message}`,
    );
  }
}
