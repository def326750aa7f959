/**
 * netns/: the namespace driver the rest of ohno uses.
 *
 * - `netns.ts`: open a namespace by path and enter it with FFI setns (`Netns`); run a
 *   synchronous section inside it, never across an `await` (`Netns.run`); spawn a command
 *   inside it (`Netns.spawn`, `runCommand`);
 * - `netlink/`: rtnetlink over FFI (`Rtnl`): links, addresses, routes, neighbours, FDB, the
 *   way cni/ and daemon/routing/ change the kernel;
 * - `nft.ts`: the nftables driver (`nft -f -` transactions, `NftError`);
 * - `ip.ts`: the `ip` driver (one command, `ip -j` state, `ip -batch -`), kept for the lab,
 *   the tests and the name rules;
 * - `links.ts`, `ffi.ts`: ioctl probes (MTU, driver, offload) and the libc calls;
 * - `sysctl.ts`: sysctl read and write inside a namespace;
 * - `manage.ts`: create and delete named namespaces (tests and the lab);
 * - `errors.ts`: the typed errors every driver throws.
 *
 * This entry re-exports nothing: code imports the file that defines a name (one way for
 * every folder; daemon/k8s/mod.ts is the one exception, the chunk the agent loads lazily).
 *
 * Imports: only lib/. Never imports cni/, ipam/ or daemon/.
 * @module
 */
