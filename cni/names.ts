/**
 * Names and hardware addresses ohno derives instead of storing: the host end of a pod's
 * veth is named from (container ID, ifname), so DEL finds it with no state, and the
 * bridge gets a fixed MAC so it does not change as ports come and go (a bridge without
 * one takes the lowest port MAC, and pods' ARP entries for the gateway go stale).
 * @module
 */

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;

/** FNV-1a, 64 bits: small, fast, stable across versions (part of the host contract). */
export function fnv1a64(text: string): bigint {
  let h = FNV_OFFSET;
  for (const b of new TextEncoder().encode(text)) {
    h ^= BigInt(b);
    h = (h * FNV_PRIME) & MASK64;
  }
  return h;
}

/** Prefix of every host-side veth ohno creates. */
const HOST_VETH_PREFIX = "veth";

/** `veth` + 11 hex digits of FNV-1a(containerID "/" ifname): 15 characters. */
export function hostVethName(containerID: string, ifname: string): string {
  return HOST_VETH_PREFIX + fnv1a64(`${containerID}/${ifname}`).toString(16).padStart(16, "0")
    .slice(0, 11);
}

/** A locally administered unicast MAC derived from `seed` (02:xx:xx:xx:xx:xx). */
export function derivedMac(seed: string): string {
  const h = fnv1a64(seed);
  const bytes = [0x02];
  for (let i = 0; i < 5; i++) bytes.push(Number((h >> BigInt(8 * i)) & 0xffn));
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}
