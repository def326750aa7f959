/**
 * netns/: the namespace driver the rest of ohno uses.
 *
 * - open a namespace by path and enter it with FFI setns ({@link Netns});
 * - run a synchronous section inside it, never across an `await` ({@link Netns.run});
 * - spawn a command inside it ({@link Netns.spawn});
 * - the `ip` driver: one command, `ip -j` state, or many commands in one
 *   `ip -batch -` ({@link ip}, {@link ipJson}, {@link IpBatch}), with typed errors;
 * - sysctl read and write inside a namespace;
 * - create and delete named namespaces (tests and the lab);
 * - rtnetlink without processes lives in netns/netlink/ (its own entry, `Rtnl`), imported
 *   directly by those who use it so that the others do not load it.
 *
 * Imports: only lib/. Never imports cni/, ipam/ or daemon/.
 * @module
 */

export * from "./errors.ts";
export * from "./netns.ts";
export * from "./ip.ts";
export * from "./sysctl.ts";
export * from "./manage.ts";
export * from "./links.ts";
