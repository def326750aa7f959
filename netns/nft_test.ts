import { assert, assertEquals, assertRejects } from "../tests/support/assert.ts";
import { tempNetns } from "../tests/support/netns.ts";
import { NftError } from "./errors.ts";
import { nftApply, nftDeleteTable, nftListTable, nftTableScript } from "./nft.ts";

Deno.test("nft driver: replace a table, read it, delete it (twice); a bad script is an NftError", async () => {
  await using t = await tempNetns("nft");
  const opts = { netns: t.ns };
  assertEquals(await nftListTable("inet", "ohnotest", opts), undefined, "no table yet");

  const body = (port: number) => [
    "  chain input {",
    "    type filter hook input priority 0; policy accept;",
    `    tcp dport ${port} accept`,
    "  }",
  ];
  for (const port of [1111, 2222]) {
    await nftApply(
      "install table inet ohnotest",
      nftTableScript("inet", "ohnotest", body(port)),
      opts,
    );
  }
  const items = await nftListTable("inet", "ohnotest", opts);
  const rules = (items ?? []).filter((i) => i.rule);
  assertEquals(rules.length, 1, "the second apply replaced the table, it did not add to it");
  assert(JSON.stringify(rules).includes("2222") && !JSON.stringify(items).includes("1111"));

  await nftDeleteTable("inet", "ohnotest", opts);
  assertEquals(await nftListTable("inet", "ohnotest", opts), undefined);
  await nftDeleteTable("inet", "ohnotest", opts); // absent already: still fine

  const err = await assertRejects(
    () => nftApply("install table inet ohnotest", "table inet ohnotest { nonsense }\n", opts),
    NftError,
    `nft could not install table inet ohnotest in ${t.ns.path}: `,
  );
  assert(err.stderr.trim() !== "", "carries nft's stderr");
  assertEquals(await nftListTable("inet", "ohnotest", opts), undefined, "nothing half-applied");
});
