/**
 * Reservations: addresses no allocation hands out (an address must be free to be
 * reserved; allocation compares its reservation key absent).
 * @module
 */

import {
  type Cidr,
  cidrSize,
  containsIp,
  formatIp,
  nthSubnet,
  parseCidr,
  parseIp,
} from "../addr.ts";
import { AddressUnavailableError } from "../errors.ts";
import type { Store } from "../store.ts";
import { readPools } from "./blocks.ts";
import { K, PREFIX } from "./keys.ts";

export interface Reservation {
  ip: string;
  note: string;
  createdAt: string;
}

export async function reserve(store: Store, ipText: string, note = ""): Promise<void> {
  const ip = parseIp(ipText);
  const text = formatIp(ip.family, ip.value);
  const pools = await readPools(store);
  const pool = pools.find((p) => containsIp(parseCidr(p.cidr), ip));
  if (!pool) throw new AddressUnavailableError(`${text} is not in any pool`);
  const block = nthSubnet(parseCidr(pool.cidr), pool.blockPrefix, 0n); // for the prefix only
  const blockOf: Cidr = {
    family: ip.family,
    network: ip.value & ~(cidrSize(block) - 1n),
    prefix: pool.blockPrefix,
  };
  const reservation: Reservation = { ip: text, note, createdAt: new Date().toISOString() };
  const r = await store.commit({
    compare: [{ key: K.ip(blockOf, text), absent: true }],
    mutations: [{ put: K.reservation(text), value: JSON.stringify(reservation) }],
  });
  if (!r.ok) {
    throw new AddressUnavailableError(`${text} is allocated; release it before reserving it`);
  }
}

export async function unreserve(store: Store, ipText: string): Promise<boolean> {
  const ip = parseIp(ipText);
  const key = K.reservation(formatIp(ip.family, ip.value));
  const kv = await store.get(key);
  if (!kv) return false;
  // Delete-if-unchanged, like every other change (a concurrent unreserve wins alone).
  return (await store.commit({
    compare: [{ key, modRevision: kv.modRevision }],
    mutations: [{ delete: key }],
  })).ok;
}

export async function readReservations(store: Store): Promise<Reservation[]> {
  return (await store.list(PREFIX.reservations)).map((kv) => JSON.parse(kv.value));
}
