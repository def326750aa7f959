// deno-lint-ignore-file no-console -- a tiny test program: its output is its interface
/**
 * "Who is calling?": a TCP server that answers every connection with the caller's
 * address as it sees it, and a client that prints the answer. Tests run both inside
 * namespaces (as separate processes, so no namespace is held across an await) to see
 * which source address a packet arrived with (masquerade or not).
 *
 *   deno run -A tcpecho.ts serve PORT     prints "ready" once listening on v4 and v6
 *   deno run -A tcpecho.ts ask HOST PORT  prints the server's answer
 * @module
 */

import type { Netns } from "../../netns/netns.ts";
import { runCommand } from "../../netns/netns.ts";

const SELF = new URL(import.meta.url).pathname;

/** The address without an IPv4-mapped prefix (`::ffff:1.2.3.4` → `1.2.3.4`). */
function plain(host: string): string {
  return host.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
}

async function serve(port: number): Promise<void> {
  const listeners: Deno.TcpListener[] = [Deno.listen({ hostname: "::", port })];
  try {
    listeners.push(Deno.listen({ hostname: "0.0.0.0", port }));
  } catch (e) {
    // [::] is a dual-stack socket that takes IPv4 too: one listener is enough.
    if (!(e instanceof Deno.errors.AddrInUse)) throw e;
  }
  console.log("ready");
  await Promise.all(listeners.map(async (l) => {
    for await (const conn of l) {
      const who = plain((conn.remoteAddr as Deno.NetAddr).hostname);
      await conn.write(new TextEncoder().encode(who + "\n")).catch(() => {});
      conn.close();
    }
  }));
}

async function ask(host: string, port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: host, port });
  const text = await new Response(conn.readable).text();
  console.log(text.trim());
}

/** A server running in a namespace; dispose to stop it. */
export interface EchoServer extends AsyncDisposable {
  port: number;
}

/** Starts the server inside `ns` and waits until it listens. */
export async function startEcho(ns: Netns, port = 8080): Promise<EchoServer> {
  const child = ns.spawn(Deno.execPath(), {
    args: ["run", "-A", "--no-prompt", SELF, "serve", String(port)],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  });
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = setTimeout(() => child.kill("SIGKILL"), 10_000);
  try {
    while (!seen.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`echo server in ${ns.path} exited before listening`);
      seen += value;
    }
  } finally {
    clearTimeout(deadline);
  }
  reader.releaseLock();
  return {
    port,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

/** Asks the server at host:port from inside `ns`; returns the address it saw. */
export async function whoAmI(ns: Netns, host: string, port = 8080): Promise<string> {
  const r = await runCommand(ns, Deno.execPath(), {
    args: ["run", "-A", "--no-prompt", SELF, "ask", host, String(port)],
    signal: AbortSignal.timeout(10_000),
  });
  if (!r.success) throw new Error(`asking ${host}:${port} failed: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

if (import.meta.main) {
  const [mode, a, b] = Deno.args;
  if (mode === "serve") await serve(Number(a));
  else if (mode === "ask") await ask(a!, Number(b));
  else {
    console.error("usage: tcpecho.ts serve PORT | ask HOST PORT");
    Deno.exit(2);
  }
}
