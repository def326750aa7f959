/**
 * A container runtime's CNI side, as libcni does it: a network configuration list run
 * plugin by plugin (`name`/`cniVersion` injected, `prevResult` chained on ADD and the
 * cached result replayed on CHECK and DEL, `runtimeConfig` holding only the capabilities
 * each plugin declares), DEL in reverse order, plugins found in CNI_PATH and run in the
 * node's namespace. The lab's `pod add`/`pod del` and the tests' chaining use it.
 * @module
 */

import { type Netns, runCommand } from "../netns/netns.ts";
import { namedError } from "../lib/errors.ts";

export interface ConfList {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
}

export interface Attachment {
  containerID: string;
  /** CNI_NETNS; empty on a DEL after the sandbox is gone. */
  netns: string;
  ifname: string;
  args?: string;
  /** Capability arguments (portMappings, bandwidth, mac, ips, …). */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniRuntimeOptions {
  /** CNI_PATH: where plugins are looked up, in order. */
  path: string[];
  /** Run plugins in this namespace (the node's); default: the caller's. */
  host?: Netns | undefined;
  /** Extra environment for every plugin (e.g. OHNO_LOG_FILE). */
  env?: Record<string, string>;
  /** Per-type binary overrides (tests: `ohno` from dist/). */
  binaries?: Record<string, string>;
}

/** A plugin answered with an error document (or not at all). */
export class CniPluginError extends namedError("CniPluginError") {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly code: number | undefined,
    message: string,
  ) {
    super(`${command} ${plugin}: ${message}`);
  }
}

export class CniRuntime {
  constructor(readonly opts: CniRuntimeOptions) {}

  #bin(type: string): string {
    const override = this.opts.binaries?.[type];
    if (override) return override;
    for (const dir of this.opts.path) {
      try {
        if (Deno.statSync(`${dir}/${type}`).isFile) return `${dir}/${type}`;
      } catch {
        // not here
      }
    }
    throw new CniPluginError(
      type,
      "find",
      undefined,
      `plugin ${type} is not in ${this.opts.path.join(":")}`,
    );
  }

  /** Runs one plugin; returns its parsed stdout (undefined when empty). */
  async exec(
    command: string,
    list: ConfList,
    plugin: Record<string, unknown>,
    a: Attachment,
    prevResult: unknown,
  ): Promise<Record<string, unknown> | undefined> {
    const type = String(plugin.type);
    const conf: Record<string, unknown> = {
      ...plugin,
      name: list.name,
      cniVersion: list.cniVersion,
    };
    const caps = (plugin.capabilities ?? {}) as Record<string, boolean>;
    const rc: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(a.capabilityArgs ?? {})) if (caps[k]) rc[k] = v;
    if (Object.keys(rc).length) conf.runtimeConfig = rc;
    if (prevResult !== undefined) conf.prevResult = prevResult;
    const r = await runCommand(this.opts.host, this.#bin(type), {
      clearEnv: true,
      env: {
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        CNI_COMMAND: command,
        CNI_CONTAINERID: a.containerID,
        CNI_NETNS: a.netns,
        CNI_IFNAME: a.ifname,
        CNI_ARGS: a.args ?? "",
        CNI_PATH: this.opts.path.join(":"),
        ...this.opts.env,
      },
      stdinText: JSON.stringify(conf),
    });
    const text = r.stdout.trim();
    let doc: Record<string, unknown> | undefined;
    if (text) {
      try {
        doc = JSON.parse(text);
      } catch {
        throw new CniPluginError(
          type,
          command,
          undefined,
          `stdout is not one JSON document: ${text.slice(0, 200)}`,
        );
      }
    }
    if (r.code !== 0) {
      const code = typeof doc?.code === "number" ? doc.code : undefined;
      const msg = typeof doc?.msg === "string" ? doc.msg : (r.stderr.trim() || `exit ${r.code}`);
      throw new CniPluginError(type, command, code, code !== undefined ? `[${code}] ${msg}` : msg);
    }
    return doc;
  }

  /** ADD through the list; returns the final result (cache it for CHECK and DEL). */
  async add(list: ConfList, a: Attachment): Promise<Record<string, unknown>> {
    let prev: unknown = undefined;
    for (const p of list.plugins) prev = await this.exec("ADD", list, p, a, prev);
    return prev as Record<string, unknown>;
  }

  async check(
    list: ConfList,
    a: Attachment,
    cached: unknown,
    only: (type: string) => boolean = () => true,
  ): Promise<void> {
    for (const p of list.plugins) {
      if (only(String(p.type))) await this.exec("CHECK", list, p, a, cached);
    }
  }

  /** DEL in reverse order, every plugin even when one fails; the first error is thrown. */
  async del(list: ConfList, a: Attachment, cached?: unknown): Promise<void> {
    let first: unknown;
    for (const p of [...list.plugins].reverse()) {
      try {
        await this.exec("DEL", list, p, a, cached);
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }
}
