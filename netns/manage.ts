/**
 * Creating and deleting named namespaces (tests and the lab; a runtime creates pods'
 * namespaces itself).
 * @module
 */

import { IpNotFoundError } from "./errors.ts";
import { ip } from "./ip.ts";
import { Netns, runCommand } from "./netns.ts";

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * Creates `/var/run/netns/NAME` (`ip netns add`), brings `lo` up inside it and returns
 * an open handle. Throws {@link IpExistsError} when the name is taken.
 */
export async function createNamedNetns(name: string): Promise<Netns> {
  if (!NAME_RE.test(name)) throw new TypeError(`bad namespace name ${JSON.stringify(name)}`);
  await ip(["netns", "add", name]);
  try {
    const ns = Netns.named(name);
    await ip(["link", "set", "lo", "up"], { netns: ns });
    return ns;
  } catch (e) {
    await deleteNamedNetns(name);
    throw e;
  }
}

/**
 * Deletes a named namespace after killing every process still inside it (so the
 * namespace really goes away). Missing namespaces are fine.
 */
export async function deleteNamedNetns(name: string): Promise<void> {
  if (!NAME_RE.test(name)) throw new TypeError(`bad namespace name ${JSON.stringify(name)}`);
  const pids = await runCommand(undefined, "/usr/sbin/ip", { args: ["netns", "pids", name] });
  if (pids.success) {
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  try {
    await ip(["netns", "delete", name]);
  } catch (e) {
    if (!(e instanceof IpNotFoundError)) throw e;
  }
}

/** Names of the named namespaces (`/var/run/netns`). */
export function listNamedNetns(): string[] {
  try {
    return [...Deno.readDirSync("/var/run/netns")].map((e) => e.name).sort();
  } catch {
    return [];
  }
}
