/**
 * cli/: ohno's command-line interface (npm:commander). Each subcommand lives in its
 * own file and registers itself here; commands print their own output (tables for
 * people, JSON for scripts) and throw {@link CliError} or any Error on failure — main.ts
 * prints the error and sets the exit code.
 *
 * Imports: anything of ohno's (the outermost layer, with main.ts). Heavy parts (etcd,
 * Kubernetes) are imported lazily inside the action that needs them.
 * @module
 */

import { Command, CommanderError } from "commander";
import { registerVersion } from "./version.ts";
import { registerIpam } from "./ipam.ts";
import { registerDaemon } from "./daemon.ts";
import { registerLab } from "./lab.ts";
import { registerInstall } from "./install.ts";
import { CliError } from "./errors.ts";

export interface CliContext {
  /** argv[0]'s last element: `ohno`, or a name the binary was linked under. */
  invokedAs: string;
}

/** Builds the program (exported for tests of the help text). */
export function buildProgram(_ctx: CliContext): Command {
  const program = new Command("ohno")
    .description("ohno: a Kubernetes network plugin (CNI) and node agent")
    .exitOverride()
    .configureOutput({
      // main.ts prints errors; commander prints help and usage to stdout itself.
      outputError: () => {},
    });
  registerVersion(program);
  registerIpam(program);
  registerDaemon(program);
  registerLab(program);
  registerInstall(program);
  return program;
}

/** Runs the CLI with `args` (without argv[0]); returns the exit code. */
export async function runCli(args: string[], ctx: CliContext): Promise<number> {
  const program = buildProgram(ctx);
  if (args.length === 0) {
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and --version end with exit code 0 and have printed already
      if (e.exitCode === 0) return 0;
      throw new CliError(e.message.replace(/^error: /, ""), e.exitCode || 2);
    }
    throw e;
  }
}
