/**
 * netns/netlink/: rtnetlink over an AF_NETLINK socket through Deno FFI, instead of `ip`
 * processes. {@link Rtnl} is the API; the request builders and decoders beside it are pure
 * and table-tested (codec_test.ts).
 *
 * Imports: netns/ (errors, ffi, Netns) only.
 * @module
 */

export * from "./codec.ts";
export * from "./link.ts";
export * from "./addr.ts";
export * from "./route.ts";
export * from "./neigh.ts";
export * from "./socket.ts";
export * from "./rtnl.ts";
