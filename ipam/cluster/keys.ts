/**
 * Cluster IPAM's key schema (ipam/SCHEMA.md): every key it writes, and every key it
 * reads back into an address. The agent's socket server reads addresses from handle keys
 * through these too, so the layout is spelt here only.
 * @module
 */

import { type Cidr, cidrKey, formatCidr, parseCidrKey } from "../addr.ts";
import { type Attachment, handleId } from "../records.ts";
import type { Family } from "../addr.ts";

export const ROOT = "/ohno/v1/";

/** The prefix of each kind of key (list with these). */
export const PREFIX = {
  pools: `${ROOT}pools/`,
  blocks: `${ROOT}blocks/`,
  nodes: `${ROOT}nodes/`,
  ips: `${ROOT}ips/`,
  handles: `${ROOT}handles/`,
  reservations: `${ROOT}reservations/`,
  cursors: `${ROOT}cursors/`,
} as const;

/** Key builders. */
export const K = {
  pool: (c: Cidr) => `${PREFIX.pools}${cidrKey(c)}`,
  block: (c: Cidr) => `${PREFIX.blocks}${cidrKey(c)}`,
  node: (n: string) => `${PREFIX.nodes}${n}`,
  ip: (block: Cidr, ip: string) => `${PREFIX.ips}${cidrKey(block)}/${ip}`,
  ipsOf: (block: Cidr) => `${PREFIX.ips}${cidrKey(block)}/`,
  handle: (a: Attachment) => `${PREFIX.handles}${handleId(a)}`,
  reservation: (ip: string) => `${PREFIX.reservations}${ip}`,
  cursor: (node: string, fam: Family) => `${PREFIX.cursors}${node}/${fam}`,
  cursorsOf: (node: string) => `${PREFIX.cursors}${node}/`,
};

/** The last segment of a key: the address of an `ips/…/<ip>` or `reservations/<ip>` key. */
export function lastSegment(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}

/** The block of an `ips/<net>-<len>/<ip>` key. */
export function blockOfIpKey(key: string): Cidr {
  return parseCidrKey(key.slice(PREFIX.ips.length, key.lastIndexOf("/")));
}

/** The block of an `ips/<net>-<len>/<ip>` key, as text (`10.244.3.0/24`). */
export function blockTextOfIpKey(key: string): string {
  return formatCidr(blockOfIpKey(key));
}

/** The address of an `ips/<net>-<len>/<ip>` key with its block's prefix: `10.244.3.7/24`. */
export function addressOfIpKey(key: string): string {
  return `${lastSegment(key)}/${blockOfIpKey(key).prefix}`;
}
