/**
 * The plugin's fast path when the config names the node agent's socket: the whole ADD,
 * DEL or CHECK is sent to the agent in one request (`POST /v1/cni`, docs/ipam-socket.md),
 * which runs this same code in-process (IPAM and netlink, no socket between them) and
 * answers with what to print. The plugin then loads no mode driver and no netlink code.
 *
 * The plugin does the call itself only when the agent says it cannot (`elsewhere`: it
 * does not see the pod's namespace, e.g. a pod runtime in another mount namespace) or
 * is older than this route. An agent that cannot be reached is CNI error 11, as for its
 * IPAM: nothing was done on this node, and the runtime tries again or deletes.
 * @module
 */

import { AgentClient, AgentError, AgentUnavailableError } from "../ipam/client.ts";
import { FORWARDED_ENV } from "../ipam/protocol.ts";
import type { Logger } from "../lib/log.ts";
import type { CniOutcome } from "./mod.ts";

/**
 * The agent's answer; or nothing, when the plugin must do the call itself; or the error
 * that kept the agent from being reached (reported once the config has been checked).
 */
export async function forward(
  raw: Record<string, string>,
  config: string,
  socket: string,
  log: Logger,
): Promise<{ answered?: CniOutcome; unreachable?: AgentUnavailableError }> {
  const env: Record<string, string> = {};
  for (const k of FORWARDED_ENV) if (raw[k] !== undefined) env[k] = raw[k];
  const t0 = performance.now();
  try {
    const r = await new AgentClient(socket).cni({ env, config });
    // verbStart: ms from process start to the call (module loading, config); agent: the call.
    log.debug("done by the node agent", {
      exitCode: r.exitCode,
      verbStart: t0.toFixed(1),
      agent: (performance.now() - t0).toFixed(1),
    });
    return { answered: r.stdout === undefined ? { exitCode: r.exitCode } : r };
  } catch (e) {
    if (e instanceof AgentUnavailableError) return { unreachable: e };
    const older = e instanceof AgentError && e.status === 400 && /^no POST /.test(e.message);
    if (e instanceof AgentError && (e.kind === "elsewhere" || older)) {
      log.info("the node agent cannot do this call; the plugin does it", { why: e.message });
      return {};
    }
    throw e;
  }
}
