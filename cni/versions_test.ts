import { assert, assertEquals } from "../tests/support/assert.ts";
import {
  compareVersions,
  isSupportedVersion,
  SUPPORTED_VERSIONS,
  versionAtLeast,
} from "./versions.ts";

Deno.test("versions compare numerically, not as strings", () => {
  assert(compareVersions("0.10.0", "0.4.0") > 0);
  assert(compareVersions("1.0.0", "1.0") === 0);
  assert(versionAtLeast("0.4.0", "0.4.0"));
  assert(!versionAtLeast("0.3.1", "0.4.0"));
});

Deno.test("exactly the five spec versions are supported", () => {
  assertEquals([...SUPPORTED_VERSIONS], ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
  assert(!isSupportedVersion("0.2.0"));
  assert(!isSupportedVersion(1));
});
