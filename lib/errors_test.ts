import { assert, assertEquals } from "../tests/support/assert.ts";
import { namedError } from "./errors.ts";

class BaseError extends namedError("BaseError") {}
class CodeError extends namedError("CodeError", BaseError) {
  constructor(readonly code: number, options?: ErrorOptions) {
    super(`failed with ${code}`, options);
  }
}
class LeafError extends namedError("LeafError", CodeError) {}

Deno.test("namedError: each class names its instances, keeps its base's constructor and chain", () => {
  const cause = new Error("below");
  const e = new LeafError(7, { cause });
  assertEquals([e.name, e.message, e.code, e.cause], ["LeafError", "failed with 7", 7, cause]);
  assert(e instanceof LeafError && e instanceof CodeError && e instanceof BaseError);
  assert(e instanceof Error);
  assertEquals(String(new BaseError("plain")), "BaseError: plain");
  assertEquals(new CodeError(1).name, "CodeError");
  assert(!(new CodeError(1) instanceof LeafError));
});
