/**
 * The `ip` driver: iproute2 run as a child process, in a chosen namespace.
 *
 * - {@link ip} runs one command, {@link ipJson} reads state with `ip -j`;
 * - {@link IpBatch} sends many commands to one `ip -batch -` process, so a whole
 *   namespace's configuration costs one fork;
 * - failures become typed errors (`IpExistsError`, `IpNotFoundError`, …) that
 *   carry the failing command and ip's stderr.
 *
 * @example
 * ```ts ignore
 * await new IpBatch()
 *   .add("link", "set", "lo", "up")
 *   .add("addr", "add", "10.0.0.2/24", "dev", "eth0")
 *   .run({ netns: pod });
 * const links = await ipJson<IpLink[]>(["link", "show"], { netns: pod });
 * ```
 * @module
 */

import { ipErrorFor } from "./errors.ts";
import { type Netns, runCommand } from "./netns.ts";

/** Where ip lives; overridable for unusual systems. */
const IP_BIN = Deno.env.get("OHNO_IP_BIN") ?? "/usr/sbin/ip";

export interface IpOptions {
  /** Run inside this namespace (default: the caller's). */
  netns?: Netns | undefined;
}

/** Runs `ip ARGS…`; returns stdout; throws a typed `IpError` on failure. */
export async function ip(args: string[], opts: IpOptions = {}): Promise<string> {
  const r = await runCommand(opts.netns, IP_BIN, { args });
  if (!r.success) throw ipErrorFor(args.join(" "), r.stderr, r.code, opts.netns?.path);
  return r.stdout;
}

/** Runs `ip -j ARGS…` and parses the JSON (an empty answer is `[]`). */
export async function ipJson<T = unknown>(args: string[], opts: IpOptions = {}): Promise<T> {
  const out = await ip(["-j", ...args], opts);
  const text = out.trim();
  return (text === "" ? [] : JSON.parse(text)) as T;
}

/**
 * Many ip commands in one `ip -batch -` process. Commands run in order and the batch
 * stops at the first failure, which is reported with that command's text.
 */
export class IpBatch {
  readonly commands: string[][] = [];

  /** `bin`: `ip` by default; `bridge` (`/usr/sbin/bridge`) reads the same batch syntax. */
  constructor(readonly bin: string = IP_BIN) {}

  /**
   * Appends one command (the words after `ip`). Words are quoted as ip's batch reader
   * needs ({@link batchWord}); a word it cannot carry is a TypeError.
   */
  add(...args: string[]): this {
    for (const a of args) batchWord(a);
    this.commands.push(args);
    return this;
  }

  get size(): number {
    return this.commands.length;
  }

  /** Runs the batch; a no-op when empty. */
  async run(opts: IpOptions = {}): Promise<void> {
    await this.#exec(false, opts);
  }

  /**
   * Runs the batch with `-j` and returns the JSON document of every command that prints
   * one (the `show` commands), in order. Lets one process both change and read state:
   * `link add …` then `link show dev …`.
   */
  async runJson<T = unknown>(opts: IpOptions & { details?: boolean } = {}): Promise<T[]> {
    return await this.#exec(true, opts) as T[];
  }

  async #exec(json: boolean, opts: IpOptions & { details?: boolean }): Promise<unknown[]> {
    if (this.commands.length === 0) return [];
    const input = this.commands.map((c) => c.map(batchWord).join(" ")).join("\n") + "\n";
    const args = [...(json ? ["-j"] : []), ...(opts.details ? ["-d"] : []), "-batch", "-"];
    const r = await runCommand(opts.netns, this.bin, { args, stdinText: input });
    if (r.success) return json ? parseJsonDocs(r.stdout) : [];
    // iproute2 reports "Command failed -:N" with the 1-based line of the failing command.
    const m = /Command failed -:(\d+)/.exec(r.stderr);
    const line = m ? Number(m[1]) : 0;
    const failed = this.commands[line - 1];
    const stderr = r.stderr.replace(/\n?Command failed -:\d+\s*$/, "").trim();
    throw ipErrorFor(
      failed ? failed.join(" ") : `-batch (${this.commands.length} commands)`,
      stderr,
      r.code,
      opts.netns?.path,
    );
  }
}

/**
 * Why ip's batch reader cannot carry `word`, or undefined when it can. iproute2 splits a
 * batch line on blanks, reads a word that starts with `"` or `'` up to the same quote,
 * cuts the line at the first `#` (inside quotes too), and joins a line that ends in a
 * backslash to the next. So: no `#`, no line break or NUL, not both kinds of quote, not
 * empty.
 */
export function batchWordProblem(word: string): string | undefined {
  if (word === "") return "is empty";
  if (word.includes("#")) return "contains '#'";
  if (/[\n\r\0]/.test(word)) return "contains a line break or NUL";
  if (word.includes('"') && word.includes("'")) return "contains both kinds of quote";
  return undefined;
}

/**
 * `word` as one word of an `ip -batch` line: as is when it has no blank, quote or
 * backslash, else in the quote it does not contain. Throws TypeError for a word ip's
 * batch reader cannot carry ({@link batchWordProblem}).
 */
export function batchWord(word: string): string {
  const problem = batchWordProblem(word);
  if (problem) throw new TypeError(`ip batch argument ${JSON.stringify(word)} ${problem}`);
  if (!/[\s"'\\]/.test(word)) return word;
  return word.includes('"') ? `'${word}'` : `"${word}"`;
}

/** Splits ip's output of several JSON documents (one per line) and parses each. */
function parseJsonDocs(text: string): unknown[] {
  return text.split("\n").map((l) => l.trim()).filter((l) => l !== "").map((l) => JSON.parse(l));
}

// ---- shapes of `ip -j` output that ohno reads (only the fields it uses) ----

export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate?: string;
  address?: string;
  link?: string;
  link_index?: number;
  link_netnsid?: number;
  master?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_data?: Record<string, unknown> };
}

export interface IpAddrInfo {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
  scope?: string;
  dynamic?: boolean;
  noprefixroute?: boolean;
  tentative?: boolean;
  dadfailed?: boolean;
}

export interface IpAddr extends IpLink {
  addr_info: IpAddrInfo[];
}

export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  table?: string;
  type?: string;
  flags?: string[];
  mtu?: number;
  advmss?: number;
}
