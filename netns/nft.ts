/**
 * The `nft` driver: nftables run as a child process, in a chosen namespace (beside the
 * `ip` driver, ip.ts).
 *
 * - {@link nftApply} runs a script in one `nft -f -` transaction; the script of
 *   {@link nftTableScript} replaces one table (create-if-missing, delete, define):
 *   atomic and idempotent, never a moment without the table's rules;
 * - {@link nftDeleteTable} removes a table whether or not it exists;
 * - {@link nftListTable} reads a table with `nft -j`;
 * - failures become a typed {@link NftError} that says what nft was doing and carries
 *   its stderr.
 *
 * @example
 * ```ts ignore
 * const script = nftTableScript("inet", "ohno", ["  chain postrouting {", "  }"]);
 * await nftApply("install table inet ohno", script, { netns: node });
 * await nftDeleteTable("inet", "ohno", { netns: node });
 * ```
 * @module
 */

import { NftError } from "./errors.ts";
import { type Netns, runCommand } from "./netns.ts";

/** Where nft lives; overridable for unusual systems. */
const NFT_BIN = Deno.env.get("OHNO_NFT_BIN") ?? "/usr/sbin/nft";

export interface NftOptions {
  /** Run inside this namespace (default: the caller's). */
  netns?: Netns | undefined;
}

/** nftables table families ohno uses. */
export type NftFamily = "inet" | "ip" | "ip6";

/**
 * The script that replaces table `family name` with one holding `body` (the lines
 * between the table's braces) when run by {@link nftApply}: create-if-missing, delete,
 * define. `header`: a first comment line (without `#`). Pure.
 */
export function nftTableScript(
  family: NftFamily,
  name: string,
  body: readonly string[],
  header?: string,
): string {
  return [
    ...(header ? [`# ${header}`] : []),
    `table ${family} ${name}`,
    `delete table ${family} ${name}`,
    `table ${family} ${name} {`,
    ...body,
    `}`,
    "",
  ].join("\n");
}

/**
 * Runs an nft script in one `nft -f -` transaction (all of it or nothing). `what` names
 * the action for the error ("install table inet ohno").
 */
export async function nftApply(what: string, script: string, opts: NftOptions = {}): Promise<void> {
  const r = await runCommand(opts.netns, NFT_BIN, { args: ["-f", "-"], stdinText: script });
  if (!r.success) throw new NftError(what, r.stderr, r.code, opts.netns?.path);
}

/** Deletes table `family name`, whether or not it exists (create, then delete: one transaction). */
export async function nftDeleteTable(
  family: NftFamily,
  name: string,
  opts: NftOptions = {},
): Promise<void> {
  const script = `table ${family} ${name}\ndelete table ${family} ${name}\n`;
  await nftApply(`remove table ${family} ${name}`, script, opts);
}

/** `nft -j list table FAMILY NAME`'s objects; undefined when there is no such table. */
export async function nftListTable(
  family: NftFamily,
  name: string,
  opts: NftOptions = {},
): Promise<Record<string, unknown>[] | undefined> {
  const r = await runCommand(opts.netns, NFT_BIN, { args: ["-j", "list", "table", family, name] });
  if (!r.success) {
    if (/No such file or directory/i.test(r.stderr)) return undefined;
    throw new NftError(`read table ${family} ${name}`, r.stderr, r.code, opts.netns?.path);
  }
  return (JSON.parse(r.stdout) as { nftables: Record<string, unknown>[] }).nftables;
}
