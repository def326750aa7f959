/**
 * A network configuration list run the way libcni runs it: each plugin gets its own
 * config with `name` and `cniVersion` injected, `prevResult` from the plugin before it
 * (ADD) or the cached result (CHECK, DEL), and `runtimeConfig` holding only the
 * capabilities it declares; DEL runs the plugins in reverse order.
 * @module
 */

import type { Netns } from "../../netns/mod.ts";
import { callCni, type CniReply, OHNO, REF_CNI_DIR, REPO } from "./ohno.ts";

export interface ConfList {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
}

export interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
  args?: string;
  /** Capability arguments (portMappings, bandwidth, mac, ips, …). */
  capabilityArgs?: Record<string, unknown>;
}

/** The binary for a plugin type: ohno's faces from dist/, the rest from /usr/lib/cni. */
export function pluginBin(type: string): string {
  return type === "ohno" || type === "ohno-ipam"
    ? `${REPO}/dist/${type}`
    : `${REF_CNI_DIR}/${type}`;
}

function pluginConfig(
  list: ConfList,
  plugin: Record<string, unknown>,
  a: Attachment,
  prevResult: unknown,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const caps = (plugin.capabilities ?? {}) as Record<string, boolean>;
  const rc: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a.capabilityArgs ?? {})) if (caps[k]) rc[k] = v;
  if (Object.keys(rc).length) conf.runtimeConfig = rc;
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return conf;
}

export class ConfListRunner {
  /** libcni's result cache for the attachment. */
  cached: Record<string, unknown> | undefined;

  constructor(
    readonly list: ConfList,
    readonly host: Netns,
    readonly env: Record<string, string> = {},
  ) {}

  async #call(command: string, plugin: Record<string, unknown>, a: Attachment, prev: unknown) {
    const r: CniReply = await callCni({
      command,
      host: this.host,
      bin: pluginBin(String(plugin.type)),
      containerId: a.containerId,
      netns: a.netns,
      ifname: a.ifname,
      ...(a.args !== undefined ? { args: a.args } : {}),
      path: `${REPO}/dist:${REF_CNI_DIR}`,
      config: pluginConfig(this.list, plugin, a, prev),
      env: this.env,
    });
    if (r.code !== 0) {
      throw new Error(`${command} ${plugin.type} failed (${r.code}): ${r.stdout}${r.stderr}`);
    }
    return r;
  }

  async add(a: Attachment): Promise<Record<string, unknown>> {
    let prev: unknown = undefined;
    for (const p of this.list.plugins) prev = (await this.#call("ADD", p, a, prev)).json;
    this.cached = prev as Record<string, unknown>;
    return this.cached;
  }

  /** CHECK of every plugin (or only those whose type `only` accepts). */
  async check(a: Attachment, only: (type: string) => boolean = () => true): Promise<void> {
    for (const p of this.list.plugins) {
      if (only(String(p.type))) await this.#call("CHECK", p, a, this.cached);
    }
  }

  async del(a: Attachment): Promise<void> {
    for (const p of [...this.list.plugins].reverse()) await this.#call("DEL", p, a, this.cached);
    this.cached = undefined;
  }
}

export { OHNO };
