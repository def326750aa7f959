/**
 * One real agent (`dist/ohno daemon`) with the local datastore, in a namespace the test
 * made with an uplink holding its node address: for tests of the agent's own behaviour
 * (readiness, liveness) without etcd or a lab.
 * @module
 */

import { ip } from "../../netns/ip.ts";
import { OHNO } from "./ohno.ts";
import { tempNetns } from "./netns.ts";

export interface LocalAgent extends AsyncDisposable {
  host: Awaited<ReturnType<typeof tempNetns>>;
  dir: string;
  socket: string;
  agent: Deno.ChildProcess;
}

/** Starts the agent (node `node`, pool 10.246.0.0/16, metrics on 127.0.0.1:9753). */
export async function localAgent(
  node: string,
  opts: { env?: Record<string, string> } = {},
): Promise<LocalAgent> {
  const host = await tempNetns(node);
  await ip(["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"], {
    netns: host.ns,
  });
  await ip(["addr", "add", "192.0.2.10/24", "dev", "uplink0"], { netns: host.ns });
  await ip(["link", "set", "uplink0", "up"], { netns: host.ns });
  const dir = await Deno.makeTempDir({ prefix: `ohnot-${node}-` });
  const socket = `${dir}/run/ipam.sock`;
  Deno.writeTextFileSync(
    `${dir}/ohno.json`,
    JSON.stringify({
      nodeName: node,
      nodeIP: { source: "addresses", addresses: ["192.0.2.10"] },
      pools: [{ cidr: "10.246.0.0/16" }],
      datastore: { type: "local", dataDir: `${dir}/ipam` },
      kubernetes: { enabled: "off" },
      masquerade: false,
      cniBinDir: `${dir}/cni/bin`,
      allowLauncher: true,
      cniConfDir: `${dir}/cni/net.d`,
      runDir: `${dir}/run`,
      socket,
      stateDir: `${dir}/state`,
      logFile: `${dir}/daemon.log`,
      cniLogFile: `${dir}/cni.log`,
      metricsAddress: "127.0.0.1:9753",
    }),
  );
  const agent = host.ns.spawn(OHNO, {
    args: ["daemon", "--config", `${dir}/ohno.json`],
    ...(opts.env ? { env: opts.env } : {}),
    stdout: "null",
    stderr: "null",
  });
  return {
    host,
    dir,
    socket,
    agent,
    async [Symbol.asyncDispose]() {
      try {
        agent.kill("SIGTERM");
      } catch {
        // gone
      }
      await agent.status;
      await Deno.remove(dir, { recursive: true });
      await host[Symbol.asyncDispose]();
    },
  };
}
