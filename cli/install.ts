/**
 * `ohno install`: puts this binary into the host's CNI bin dir as `ohno`, with `ohno-ipam`
 * linked to it, by temp file and rename (a runtime running the old binary is never hit
 * by "text file busy"). What a DaemonSet's init container runs, like flannel's and
 * Calico's CNI installers. The conflist is the agent's to write, once it can answer
 * IPAM and has programmed routes: a conflist written earlier would make the runtime send
 * ADDs that can only fail, and the node would look ready too soon.
 */
import type { Command } from "commander";
import { installBinary, LauncherRefusedError } from "../daemon/install.ts";
import { CliError } from "./errors.ts";
import { selfExecutable } from "../lib/argv0.ts";
import { outputFormat, print, printJson } from "./output.ts";

export function registerInstall(program: Command): void {
  program.command("install")
    .description("install this binary as the CNI plugin (ohno, ohno-ipam) on this host")
    .option("--cni-bin-dir <dir>", "the host's CNI bin dir", "/opt/cni/bin")
    .option("-o, --output <format>", "text or json", "text")
    .option(
      "--allow-launcher",
      "install even a development launcher script (runs only where its checkout is)",
      Deno.env.get("OHNO_ALLOW_LAUNCHER") === "1",
    )
    .action((opts: { cniBinDir: string; output: string; allowLauncher: boolean }) => {
      const fmt = outputFormat(opts.output, ["text", "json"] as const);
      const source = selfExecutable();
      let changed: boolean;
      try {
        changed = installBinary(source, opts.cniBinDir, opts.allowLauncher);
      } catch (e) {
        if (e instanceof LauncherRefusedError) throw new CliError(e.message, 1);
        throw e;
      }
      const doc = { source, binDir: opts.cniBinDir, binary: "ohno", link: "ohno-ipam", changed };
      if (fmt === "json") return printJson(doc);
      print(
        `${
          changed ? "installed" : "unchanged"
        }: ${opts.cniBinDir}/ohno (and ohno-ipam) from ${source}`,
      );
    });
}
