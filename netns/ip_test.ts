import { assertEquals, assertThrows } from "../tests/support/assert.ts";
import { batchWord } from "./ip.ts";

Deno.test("batch words: plain as is, blanks and quotes quoted, what ip cannot read refused", () => {
  const cases: [string, string][] = [
    ["eth0", "eth0"],
    ["help", "help"],
    ["/run/netns/pod ns", '"/run/netns/pod ns"'],
    ['q"uo', `'q"uo'`],
    ["s'q", `"s'q"`],
    ["b\\", '"b\\"'],
  ];
  for (const [word, want] of cases) assertEquals(batchWord(word), want);
  for (const word of ["", "a#b", "a\nb", `b"r'1`]) assertThrows(() => batchWord(word), TypeError);
});
