/** `ohno daemon [flags]`: the node agent (docs/daemon.md). */
import type { Command } from "commander";
import { DAEMON_FLAGS, type DaemonFlags } from "../daemon/config.ts";
import { CliError } from "./errors.ts";

export function registerDaemon(program: Command): void {
  const cmd = program.command("daemon")
    .description("run the node agent: IPAM server, routes, masquerade, host install");
  for (const f of DAEMON_FLAGS) {
    cmd.option(f.flags, f.env ? `${f.description} (env ${f.env})` : f.description);
  }
  cmd.option(
    "--cleanup",
    "remove ohno's routes, VXLAN devices, nftables table and conflist, then exit",
  );
  cmd.action(async (opts: DaemonFlags & { cleanup?: boolean }) => {
    // Loaded here: the CLI's other commands do not need the agent.
    const { loadDaemonConfig, DaemonConfigError } = await import("../daemon/config.ts");
    const { runAgent, cleanupAgent } = await import("../daemon/agent.ts");
    const { Logger } = await import("../lib/log.ts");
    let config;
    try {
      config = loadDaemonConfig({ flags: opts });
    } catch (e) {
      if (e instanceof DaemonConfigError) throw new CliError(e.message, 2);
      throw e;
    }
    const log = new Logger({
      level: config.logLevel,
      file: config.logFile,
      stdout: true,
      context: config.nodeName,
    });
    if (opts.cleanup) return await cleanupAgent(config, log);
    const ac = new AbortController();
    const stop = (sig: Deno.Signal) => () => {
      log.info(`${sig}: shutting down`);
      ac.abort();
    };
    Deno.addSignalListener("SIGTERM", stop("SIGTERM"));
    Deno.addSignalListener("SIGINT", stop("SIGINT"));
    try {
      await runAgent({ config, log, signal: ac.signal });
    } catch (e) {
      log.error("agent failed", { error: (e as Error).message });
      throw e;
    }
  });
}
