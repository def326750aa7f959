/**
 * ohno's entry: picks the part and does nothing else.
 *
 * - `CNI_COMMAND` set → CNI mode (as `ohno`, the main plugin; as `ohno-ipam`, the IPAM
 *   plugin). Only the CNI code is loaded: no CLI parser, no etcd or Kubernetes client.
 * - otherwise → the command-line interface (`ohno --help`).
 *
 * This is the only place that prints errors and sets the exit code.
 * @module
 */

import { invokedName } from "./lib/argv0.ts";

const encoder = new TextEncoder();

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

async function main(): Promise<number> {
  const name = invokedName();
  const command = Deno.env.get("CNI_COMMAND");
  if (command === "VERSION") {
    // The runtime's probe: answered by the VERSION module alone.
    const [{ answerVersion }, { readAllSync }] = await Promise.all([
      import("./cni/version.ts"),
      import("./lib/bytes.ts"),
    ]);
    const outcome = answerVersion(readAllSync(Deno.stdin));
    writeAll(Deno.stdout, JSON.stringify(outcome.stdout) + "\n");
    return outcome.exitCode;
  }
  if (command !== undefined) {
    const { runCni } = await import("./cni/mod.ts");
    const outcome = await runCni(name === "ohno-ipam" ? "ohno-ipam" : "ohno");
    // Exactly one JSON document on stdout, ever.
    if (outcome.stdout !== undefined) writeAll(Deno.stdout, JSON.stringify(outcome.stdout) + "\n");
    return outcome.exitCode;
  }
  const [{ runCli }, { CliError }] = await Promise.all([
    import("./cli/mod.ts"),
    import("./cli/errors.ts"),
  ]);
  try {
    return await runCli(Deno.args, { invokedAs: name });
  } catch (e) {
    if (e instanceof CliError) {
      if (e.message) writeAll(Deno.stderr, `ohno: ${e.message}\n`);
      return e.exitCode;
    }
    const err = e as Error;
    writeAll(Deno.stderr, `ohno: ${err?.message ?? String(e)}\n`);
    if (Deno.env.get("OHNO_DEBUG")) writeAll(Deno.stderr, `${err?.stack ?? ""}\n`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
