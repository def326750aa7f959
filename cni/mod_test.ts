/** CNI mode's stdin reading: everything, across reads, UTF-8 split anywhere. */
import { assertEquals } from "../tests/support/assert.ts";
import { readAllSync } from "../lib/bytes.ts";

function reader(bytes: Uint8Array, step: number) {
  let at = 0;
  return {
    readSync(p: Uint8Array): number | null {
      if (at >= bytes.length) return null;
      const n = Math.min(step, p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return n;
    },
  };
}

Deno.test("stdin is read to the end, whatever the read sizes", () => {
  const text = JSON.stringify({ name: "nét", pad: "x".repeat(200_000) });
  const bytes = new TextEncoder().encode(text);
  for (const step of [7, 4096, 65536, 1 << 20]) {
    assertEquals(readAllSync(reader(bytes, step)), text);
  }
  assertEquals(readAllSync(reader(new Uint8Array(0), 10)), "");
});
