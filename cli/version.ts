/** `ohno version [-o text|json]`. */
import type { Command } from "commander";
import { SUPPORTED_VERSIONS } from "../cni/versions.ts";
import { OHNO_VERSION } from "../lib/version.ts";
import { outputFormat, print, printJson } from "./output.ts";

function versionInfo() {
  return {
    version: OHNO_VERSION,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    cniVersions: [...SUPPORTED_VERSIONS],
  };
}

export function registerVersion(program: Command): void {
  program.command("version")
    .description("print ohno's version, its Deno, and the CNI versions it supports")
    .option("-o, --output <format>", "text or json", "text")
    .action((opts: { output: string }) => {
      const fmt = outputFormat(opts.output, ["text", "json"] as const);
      const v = versionInfo();
      if (fmt === "json") return printJson(v);
      print(
        `ohno ${v.version}\ndeno ${v.deno} (v8 ${v.v8}, typescript ${v.typescript})\n` +
          `CNI spec versions: ${v.cniVersions.join(", ")}`,
      );
    });
}
