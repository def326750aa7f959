/**
 * Nodes: their records (underlay addresses, backend data) and the release of everything
 * a node holds when it is gone.
 * @module
 */

import { parseCidr, parseIp } from "../addr.ts";
import type { Compare, KV, Mutation, Store } from "../store.ts";
import { readBlocks } from "./blocks.ts";
import { K, PREFIX } from "./keys.ts";
import { checkNodeName, type ClusterHandle, type NodeRecord, parse } from "./types.ts";

/** Writes (or refreshes) a node's record: its underlay addresses and backend data. */
export async function registerNode(
  store: Store,
  name: string,
  info: { ips: string[]; backend?: Record<string, unknown> },
): Promise<void> {
  checkNodeName(name);
  for (const ip of info.ips) parseIp(ip);
  const rec: NodeRecord = {
    name,
    ips: info.ips,
    ...(info.backend ? { backend: info.backend } : {}),
    updatedAt: new Date().toISOString(),
  };
  await store.commit({ mutations: [{ put: K.node(name), value: JSON.stringify(rec) }] });
}

/**
 * Creates a record with no addresses for a node that has none (the admin CLI's
 * `allocate --create-node`); an existing record is left as it is. True when created.
 */
export async function createNode(store: Store, name: string): Promise<boolean> {
  checkNodeName(name);
  const rec: NodeRecord = { name, ips: [], updatedAt: new Date().toISOString() };
  const r = await store.commit({
    compare: [{ key: K.node(name), absent: true }],
    mutations: [{ put: K.node(name), value: JSON.stringify(rec) }],
  });
  return r.ok;
}

export async function readNode(store: Store, name: string): Promise<NodeRecord | undefined> {
  checkNodeName(name);
  const kv = await store.get(K.node(name));
  return kv ? parse<NodeRecord>(kv) : undefined;
}

export async function readNodes(store: Store): Promise<NodeRecord[]> {
  return (await store.list(PREFIX.nodes)).map((kv) => parse<NodeRecord>(kv));
}

/** Deletes a chunk of handles with their address keys if unchanged; true when committed. */
async function deleteHandles(store: Store, chunk: KV[]): Promise<boolean> {
  const compare: Compare[] = [];
  const mutations: Mutation[] = [];
  for (const kv of chunk) {
    compare.push({ key: kv.key, modRevision: kv.modRevision });
    mutations.push({ delete: kv.key });
    for (const key of parse<ClusterHandle>(kv).keys ?? []) mutations.push({ delete: key });
  }
  return (await store.commit({ compare, mutations })).ok;
}

/** Deletes every attachment of `node`, a few per transaction (etcd limits operations). */
async function releaseNodeHandles(store: Store, node: string): Promise<number> {
  let addresses = 0;
  for (;;) {
    const mine = (await store.list(PREFIX.handles)).filter((kv) =>
      parse<ClusterHandle>(kv).node === node
    );
    if (mine.length === 0) return addresses;
    for (let i = 0; i < mine.length; i += 20) {
      const chunk = mine.slice(i, i + 20);
      if (await deleteHandles(store, chunk)) addresses += chunk.length;
    }
  }
}

/**
 * Releases everything of a node: its attachments, its blocks (with any address left in
 * them), its cursors and its record. Safe when several agents do it at once: each step
 * is conditional, and a lost race just means the work is already done.
 */
export async function releaseNode(
  store: Store,
  node: string,
): Promise<{ blocks: string[]; addresses: number }> {
  checkNodeName(node);
  const addresses = await releaseNodeHandles(store, node);
  const blocks: string[] = [];
  for (const b of (await readBlocks(store)).filter((b) => b.value.node === node)) {
    const c = parseCidr(b.value.cidr);
    const r = await store.commit({
      compare: [{ key: b.kv.key, modRevision: b.kv.modRevision }],
      mutations: [{ deletePrefix: K.ipsOf(c) }, { delete: b.kv.key }],
    });
    if (r.ok) blocks.push(b.value.cidr);
  }
  await store.commit({
    mutations: [{ deletePrefix: K.cursorsOf(node) }, { delete: K.node(node) }],
  });
  return { blocks, addresses };
}
