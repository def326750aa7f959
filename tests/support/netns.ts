/**
 * Throwaway network namespaces for tests: `await using ns = await tempNetns()` removes
 * the namespace (and kills what runs in it) even when the test fails.
 *
 * Names are `ohnot-<pid>-<tag><n>`, so leftovers are recognisable and the runner can
 * sweep them.
 * @module
 */

import { createNamedNetns, deleteNamedNetns, namedNetnsPath, type Netns } from "../../netns/mod.ts";

/** Prefix of every namespace a test creates. */
export const TEST_NETNS_PREFIX = "ohnot-";
let counter = 0;
/**
 * `deno test --parallel` runs test files in workers of one process: same pid, a module
 * (and counter) each. A per-worker suffix keeps their names apart.
 */
const worker = crypto.randomUUID().slice(0, 4);

/** A unique namespace name for this test process. */
export function testNetnsName(tag = "n"): string {
  return `${TEST_NETNS_PREFIX}${Deno.pid}-${tag}${counter++}-${worker}`;
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
