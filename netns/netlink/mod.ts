/**
 * netns/netlink/: rtnetlink over an AF_NETLINK socket through Deno FFI, instead of `ip`
 * processes. {@link Rtnl} is the API; the request builders and decoders beside it are pure
 * and table-tested (codec_test.ts): `codec.ts` (messages and attributes), `link.ts`,
 * `addr.ts`, `route.ts`, `neigh.ts` (requests and decoders), `socket.ts` (one socket per
 * namespace, ACKs, errors), `rtnl.ts` (the API).
 *
 * This entry re-exports nothing: code imports the file that defines a name (one way for
 * every folder; daemon/k8s/mod.ts is the one exception, the chunk the agent loads lazily).
 *
 * Imports: netns/ (errors, ffi, Netns) only.
 * @module
 */
