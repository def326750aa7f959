/**
 * The pod's kernel work done by the agent: `POST /v1/cni` runs the plugin's own code
 * (cni/mod.ts `runCni`, loaded on the first call) in-process, with the config's agent
 * IPAM answered by this agent's request handler directly (no socket, no second
 * process). Calls run concurrently: each is async, and its netlink requests are short
 * synchronous kernel calls.
 * @module
 */

import type { AgentTransport } from "../ipam/client.ts";
import type { CniRequest, CniResponse } from "../ipam/protocol.ts";

/** CAP_SYS_ADMIN's bit in /proc/self/status `CapEff` (capability.h). */
const CAP_SYS_ADMIN = 21n;

/**
 * Whether this process may enter a pod's network namespace: setns(2) into a network
 * namespace needs CAP_SYS_ADMIN (NET_ADMIN is not enough). The manifest's agent has only
 * NET_ADMIN, NET_RAW and NET_BIND_SERVICE, so there the plugin keeps doing the pod's
 * kernel work; an agent run as root (the lab, a node service) does it.
 */
export function canEnterNamespaces(status?: string): boolean {
  let text = status;
  try {
    text ??= Deno.readTextFileSync("/proc/self/status");
  } catch {
    return false;
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  return !!m && ((BigInt(`0x${m[1]}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
}

/** `handler()`: the IPAM server's request handler (bound once the server runs). */
export function podWork(
  handler: () => (req: Request) => Promise<Response>,
): (req: CniRequest) => Promise<CniResponse> {
  const transport: AgentTransport = async (method, path, body, signal) => {
    const res = await handler()(
      new Request(`http://ohno-agent${path}`, {
        method,
        signal,
        ...(body !== undefined ? { body } : {}),
      }),
    );
    return { status: res.status, body: await res.text() };
  };
  return async (req) => {
    const { runCni } = await import("../cni/mod.ts");
    const out = await runCni("ohno", {
      env: req.env,
      readStdin: () => Promise.resolve(req.config),
      agent: transport,
    });
    return out.stdout === undefined
      ? { exitCode: out.exitCode }
      : { exitCode: out.exitCode, stdout: out.stdout };
  };
}
