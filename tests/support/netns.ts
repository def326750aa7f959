/**
 * Throwaway network namespaces for tests: `await using ns = await tempNetns()` removes
 * the namespace (and kills what runs in it) even when the test fails.
 *
 * Names are `ohnot-<pid>-<token><tag><n>`, so leftovers are recognisable and the runner can
 * sweep them.
 * @module
 */

import { createNamedNetns, deleteNamedNetns, listNamedNetns } from "../../netns/manage.ts";
import { namedNetnsPath, type Netns } from "../../netns/netns.ts";
import * as labs from "../../lab/lab.ts";
import { processAlive } from "../../lib/proc.ts";

/** Prefix of every namespace a test creates. */
export const TEST_NETNS_PREFIX = "ohnot-";
let counter = 0;
/** Test files run as workers of one process (same pid): each module load gets its own token. */
const token = crypto.randomUUID().slice(0, 4);

/** A unique namespace name for this test process. */
export function testNetnsName(tag = "n"): string {
  return `${TEST_NETNS_PREFIX}${Deno.pid}-${token}${tag}${counter++}`;
}

export interface TempNetns extends AsyncDisposable {
  readonly name: string;
  /** `/var/run/netns/<name>` — what a runtime passes in CNI_NETNS. */
  readonly path: string;
  /** An open handle (closed on dispose). */
  readonly ns: Netns;
}

/** Creates a named namespace with `lo` up. */
export async function tempNetns(tag?: string): Promise<TempNetns> {
  const name = testNetnsName(tag);
  const ns = await createNamedNetns(name);
  return {
    name,
    path: namedNetnsPath(name),
    ns,
    async [Symbol.asyncDispose]() {
      ns.close();
      await deleteNamedNetns(name);
    },
  };
}

/** Several namespaces at once, disposed together. */
export async function tempNetnsSet(
  count: number,
  tag?: string,
): Promise<TempNetns[] & AsyncDisposable> {
  const list: TempNetns[] = [];
  const result = Object.assign(list, {
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(list.map((n) => n[Symbol.asyncDispose]()));
    },
  });
  try {
    // A few at a time: `ip netns add` takes a global lock in the kernel anyway.
    for (let i = 0; i < count; i += 8) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(8, count - i) }, () => tempNetns(tag)),
      );
      list.push(...batch);
    }
  } catch (e) {
    await result[Symbol.asyncDispose]();
    throw e;
  }
  return result;
}

/**
 * The pid a test namespace name carries, or undefined for any other name: `ohnot-PID-…`
 * (tempNetns) and the namespaces of test labs, `ohno-lab-tPIDz…` (tests/support/lab.ts).
 */
export function testNetnsPid(name: string): number | undefined {
  const m = /^ohnot-(\d+)-/.exec(name) ?? TEST_LAB_NETNS.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** A test lab's namespace: the lab's name is `tPIDzTOKENxN` (tests/support/lab.ts). */
const TEST_LAB_NETNS = /^ohno-lab-t(\d+)z[0-9a-f]{4}x\d+(?:-|$)/;

/** The lab a test lab namespace belongs to (`ohno-lab-t123z0a1bx0-node1` → `t123z0a1bx0`). */
export function testLabOf(netns: string): string | undefined {
  return TEST_LAB_NETNS.test(netns) ? netns.slice("ohno-lab-".length).split("-")[0] : undefined;
}

/**
 * Removes test namespaces whose process is gone (a run killed before it could clean
 * up). Namespaces of live processes are left alone: another run may be using them.
 * Returns the names removed.
 */
export async function sweepStaleTestNetns(): Promise<string[]> {
  const removed: string[] = [];
  for (const name of listNamedNetns()) {
    const pid = testNetnsPid(name);
    if (pid === undefined || pid === Deno.pid || processAlive(pid)) continue;
    const lab = testLabOf(name);
    // A lab also has processes (etcd, agents) and a state dir: take it down whole.
    if (lab) await labs.down(lab).then((r) => removed.push(...r), () => {});
    else await deleteNamedNetns(name).then(() => removed.push(name), () => {});
  }
  return removed;
}

/** Removes every test namespace this process (or the given pid) created. */
export async function sweepTestNetnsOf(pid = Deno.pid): Promise<void> {
  for (const name of listNamedNetns()) {
    if (testNetnsPid(name) !== pid) continue;
    const lab = testLabOf(name);
    if (lab) await labs.down(lab).catch(() => {});
    else await deleteNamedNetns(name).catch(() => {});
  }
}
