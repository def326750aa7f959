/**
 * Running another CNI plugin (a delegated IPAM plugin) the way a runtime would: the same
 * environment with CNI_COMMAND set, the network config on stdin, its one JSON document
 * read from stdout. An error document from the plugin is passed on unchanged.
 * @module
 */

import { CniCode, CniError } from "./errors.ts";
import type { CniEnv } from "./env.ts";

/** Finds `type` in the CNI_PATH directories. */
function findPlugin(type: string, path: string[]): string {
  for (const dir of path) {
    const p = `${dir}/${type}`;
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // not here
    }
  }
  throw new CniError(
    CniCode.InvalidConfig,
    `invalid network config: plugin ${JSON.stringify(type)} is not in CNI_PATH (${
      path.join(":") || "empty"
    })`,
  );
}

/** Runs plugin `type` for `command`; returns its parsed stdout (undefined when empty). */
export async function execPlugin(
  type: string,
  command: string,
  stdin: string,
  env: CniEnv,
): Promise<unknown> {
  const bin = findPlugin(type, env.path);
  const child = new Deno.Command(bin, {
    env: { ...env.raw, CNI_COMMAND: command },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin)).catch(() => {});
  await w.close().catch(() => {});
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout).trim();
  let doc: unknown;
  if (text !== "") {
    try {
      doc = JSON.parse(text);
    } catch {
      throw new CniError(
        CniCode.Internal,
        `${type} ${command} printed something that is not JSON`,
        text.slice(0, 500),
      );
    }
  }
  if (!out.success) {
    const e = (doc ?? {}) as { code?: unknown; msg?: unknown; details?: unknown };
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new CniError(
      typeof e.code === "number" ? e.code : CniCode.Internal,
      `${type}: ${typeof e.msg === "string" ? e.msg : `${command} failed (exit ${out.code})`}`,
      typeof e.details === "string" ? e.details : (stderr || undefined),
    );
  }
  return doc;
}
