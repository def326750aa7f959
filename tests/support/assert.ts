/**
 * Assertions for ohno's tests, named like Deno std's (which cannot be installed here:
 * JSR is unreachable). Deep equality comes from `node:assert`.
 * @module
 */
import nodeAssert from "node:assert/strict";

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  try {
    nodeAssert.deepStrictEqual(actual, expected);
  } catch (e) {
    throw new AssertionError(`${msg ? msg + "\n" : ""}${(e as Error).message}`);
  }
}

export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  try {
    nodeAssert.notDeepStrictEqual(actual, expected);
  } catch (e) {
    throw new AssertionError(`${msg ? msg + "\n" : ""}${(e as Error).message}`);
  }
}

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  if (!re.test(actual)) {
    throw new AssertionError(msg ?? `expected ${JSON.stringify(actual)} to match ${re}`);
  }
}

export function assertStringIncludes(actual: string, part: string, msg?: string): void {
  if (!actual.includes(part)) {
    throw new AssertionError(
      msg ?? `expected ${JSON.stringify(actual)} to include ${JSON.stringify(part)}`,
    );
  }
}

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls?: ErrorClass<E>,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  throw new AssertionError("expected the function to throw");
}

export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  cls?: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  throw new AssertionError("expected the promise to reject");
}

function checkError<E extends Error>(e: unknown, cls?: ErrorClass<E>, includes?: string): E {
  if (cls && !(e instanceof cls)) {
    throw new AssertionError(
      `expected ${cls.name}, got ${(e as Error)?.name}: ${(e as Error)?.message}`,
    );
  }
  if (includes && !String((e as Error)?.message).includes(includes)) {
    throw new AssertionError(
      `expected error message to include ${JSON.stringify(includes)}, got ${
        JSON.stringify((e as Error)?.message)
      }`,
    );
  }
  return e as E;
}
