/**
 * The state of a key-value store held in one object, and the pure function that applies
 * a transaction to it. The memory store keeps it in memory; the local file store keeps
 * it in one JSON file.
 * @module
 */

import { compareHolds, type KV, type Txn, type WatchEvent } from "./store.ts";

export interface KvState {
  revision: number;
  /** key → [value, createRevision, modRevision] */
  keys: Record<string, [string, number, number]>;
}

export function emptyState(): KvState {
  return { revision: 0, keys: {} };
}

export function kvOf(state: KvState, key: string): KV | undefined {
  const e = state.keys[key];
  return e ? { key, value: e[0], createRevision: e[1], modRevision: e[2] } : undefined;
}

/** Keys with the prefix, in byte order (JS string order is UTF-16; keys are ASCII). */
export function listOf(state: KvState, prefix: string): KV[] {
  return Object.keys(state.keys).filter((k) => k.startsWith(prefix)).sort().map((k) =>
    kvOf(state, k)!
  );
}

/**
 * Applies `txn` to `state` in place if every compare holds. Returns whether it applied
 * and the events it caused (none when nothing changed: the revision stays).
 */
export function applyTxn(state: KvState, txn: Txn): { ok: boolean; events: WatchEvent[] } {
  for (const c of txn.compare ?? []) {
    if (!compareHolds(c, kvOf(state, c.key))) return { ok: false, events: [] };
  }
  const rev = state.revision + 1;
  const events: WatchEvent[] = [];
  for (const m of txn.mutations) {
    if ("put" in m) {
      const old = state.keys[m.put];
      state.keys[m.put] = [m.value, old ? old[1] : rev, rev];
      events.push({ type: "put", kv: kvOf(state, m.put)! });
    } else if ("delete" in m) {
      if (state.keys[m.delete]) {
        delete state.keys[m.delete];
        events.push({ type: "delete", key: m.delete, modRevision: rev });
      }
    } else {
      for (const k of Object.keys(state.keys)) {
        if (!k.startsWith(m.deletePrefix)) continue;
        delete state.keys[k];
        events.push({ type: "delete", key: k, modRevision: rev });
      }
    }
  }
  if (events.length > 0) state.revision = rev;
  return { ok: true, events };
}
