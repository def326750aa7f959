/**
 * Error classes that say their own name. `String(e)`, stacks and logs show `e.name`;
 * a class made with {@link namedError} sets it, so a one-line subclass is a whole
 * error class:
 *
 * ```ts ignore
 * export class IpamError extends namedError("IpamError") {}
 * export class IpamExhaustedError extends namedError("IpamExhaustedError", IpamError) {}
 * ```
 *
 * The name is given as a string, not taken from the class: a bundler may rename classes.
 * @module
 */

// deno-lint-ignore no-explicit-any -- a mixin's base constructor takes any arguments
type ErrorClass = new (...args: any[]) => Error;

/** A base class, below `base` (default `Error`), whose instances are named `errorName`. */
export function namedError<B extends ErrorClass = ErrorConstructor>(
  errorName: string,
  base?: B,
) {
  const Base = (base ?? Error) as B;
  return class extends Base {
    override name = errorName;
  };
}
