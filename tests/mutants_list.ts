/**
 * The breaks `./dev mutants` applies (tests/mutants.ts): one line each, in the code that
 * keeps one of ohno's promises, with the tests that must notice. `from` must occur exactly
 * once in `file`.
 * @module
 */

export interface Mutant {
  id: string;
  /** The promise this breaks, in a few words. */
  what: string;
  file: string;
  from: string;
  to: string;
  /** Test files (and dirs) that guard it, as given to tests/run.ts. */
  tests: string[];
  /** Narrows the run to matching test names (deno test --filter). */
  filter?: string;
}

export const MUTANTS: Mutant[] = [
  {
    id: "slave-del-home",
    what: "macvlan DEL deletes CNI_IFNAME in the node's own namespace",
    file: "cni/macvlan.ts",
    from: "    if (pod.isHome()) {",
    to: "  if (false) {",
    tests: ["tests/cni_macvlan_test.ts"],
    filter: "own namespace",
  },
  {
    id: "slave-master-is-slave",
    what: "a macvlan/ipvlan slave is taken as the master",
    file: "cni/macvlan.ts",
    from: "  if (SLAVE_DRIVERS.has(driver)) {",
    to: "  if (false) {",
    tests: ["tests/cni_macvlan_test.ts"],
    filter: "bad masters",
  },
  {
    id: "slave-mtu-above-master",
    what: "an MTU above the master's is accepted",
    file: "cni/macvlan.ts",
    from: "  if (mtu !== undefined && mtu > masterMtu) {",
    to: "  if (false) {",
    tests: ["tests/cni_macvlan_test.ts"],
    filter: "bad masters",
  },
  {
    id: "shim-steals-route",
    what: "the shim replaces the node's own route to a subnet",
    file: "cni/macvlan.ts",
    from: "    checkShimRoutes(kind, master, subnets);",
    to: "    void checkShimRoutes;",
    tests: ["tests/cni_macvlan_test.ts"],
    filter: "bad masters",
  },
  {
    id: "del-release",
    what: "DEL deletes the veth but does not release the addresses",
    file: "cni/del.ts",
    from: "    await ipam.del();",
    to: "    void ipam;",
    tests: ["tests/cni_bridge_test.ts"],
  },
  {
    id: "add-rollback",
    what: "a failed ADD keeps its addresses (no IPAM undo)",
    file: "cni/add.ts",
    from: "await ipam.del().catch((e) =>",
    to: "await Promise.resolve().catch((e) =>",
    tests: ["tests/cni_bridge_test.ts"],
  },
  {
    id: "alloc-compare",
    what: "allocation writes an address without comparing that it is free",
    file: "ipam/attachments.ts",
    from: "    this.compare.push({ key, absent: true });",
    to: "    this.compare.push({ key: key + '\\u0000', absent: true });",
    tests: ["ipam/cluster_test.ts"],
  },
  {
    id: "stale-route-delete",
    what: "reconcile keeps routes to blocks no peer owns any more",
    file: "daemon/routing/diff.ts",
    from: "    if (!wantedDst.has(dst)) plan.delete.push(...list);",
    to: "    if (!wantedDst.has(dst)) void list;",
    tests: ["daemon/routing/diff_test.ts", "tests/hostgw_test.ts"],
  },
  {
    id: "one-json-stdout",
    what: "CNI mode prints a log line on stdout before its JSON",
    file: "main.ts",
    from: "    if (outcome.stdout !== undefined) writeAll(",
    to:
      '    writeAll(Deno.stdout, "ohno: done\\n");\n    if (outcome.stdout !== undefined) writeAll(',
    tests: ["tests/main_test.ts", "tests/cni_verbs_test.ts"],
  },
  {
    id: "gc-release",
    what: "GC releases no address",
    file: "cni/gc.ts",
    from: "    await ctx.ipam.gc(valid);",
    to: "    void valid;",
    tests: ["tests/cni_negative_test.ts"],
  },
  {
    id: "check-address",
    what: "CHECK ignores a missing pod address",
    file: "cni/check.ts",
    from: "if (!have.has(ip.address)) throw",
    to: "if (have.size < 0) throw",
    tests: ["tests/cni_negative_test.ts"],
  },
  {
    id: "check-route",
    what: "CHECK ignores a missing default route",
    file: "cni/check.ts",
    from: "if (!routes.some((r) => r.gateway === ip.gateway && r.dev === env.ifname)) {",
    to: "if (routes.length < 0) {",
    tests: ["tests/cni_negative_test.ts"],
  },
  {
    id: "ifname-limit",
    what: "interface names of 16 characters pass the environment check",
    file: "cni/env.ts",
    from: "  if (name.length > 15) {",
    to: "  if (name.length > 16) {",
    tests: ["tests/cni_negative_test.ts"],
  },
  {
    id: "readiness-order",
    what: "the agent serves allocations before its pools, node and blocks are loaded",
    file: "daemon/agent.ts",
    from: "    let ipamReady = false;",
    to: "    let ipamReady = true;",
    tests: ["tests/daemon_ready_test.ts"],
  },
  {
    id: "peer-relist",
    what: "the agent re-lists the cluster on every watch event (the O(N²) storm)",
    file: "ipam/cluster/peers.ts",
    from: "      if (reset || touched.size === 0) continue;",
    to:
      "      if (touched.size) burst.reset = true;\n      if (burst.reset || touched.size === 0) continue;",
    tests: ["ipam/cluster/peers_test.ts", "tests/peers_burst_test.ts"],
  },
  {
    id: "cross-node-release",
    what: "an agent releases another node's attachment",
    file: "ipam/cluster/handles.ts",
    from: "    if (!inScope(h, scope)) return { result: [] as string[] };",
    to: "      void inScope;",
    tests: ["ipam/cluster_test.ts"],
  },
  {
    id: "watch-deadline",
    what: "etcd watch streams get the request deadline and are re-created every 5 s",
    file: "ipam/etcd.ts",
    from: "        ctx.isStream ? {} : { deadline: new Date(Date.now() + this.requestTimeoutMs) },",
    to:
      "        ({ deadline: new Date(Date.now() + this.requestTimeoutMs + 0 * Number(ctx.isStream)) }),",
    tests: ["tests/peers_burst_test.ts"],
  },
  {
    id: "watch-lost",
    what: "a broken etcd watch stream is left to etcd3 to re-create (it may never come back)",
    file: "ipam/etcd.ts",
    from: '    watcher.on("disconnected", lost);',
    to: '    watcher.on("disconnected", () => {});',
    tests: ["tests/peers_burst_test.ts"],
    filter: "cut off",
  },
];
