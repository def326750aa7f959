/**
 * Running dist/ohno (and the reference plugins) from tests, exactly as a runtime does:
 * environment variables, config on stdin, inside the "host" namespace the test made.
 * @module
 */

import { type Netns, runCommand } from "../../netns/netns.ts";

export const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
/** The binary under test (launcher or compiled, whichever the build made). */
export const OHNO = `${REPO}/dist/ohno`;
/** The IPAM face (a symlink to dist/ohno). */
export const OHNO_IPAM = `${REPO}/dist/ohno-ipam`;
/** The reference plugins from containernetworking-plugins. */
export const REF_CNI_DIR = "/usr/lib/cni";

export interface CniCall {
  command: string;
  config: unknown;
  containerID?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  path?: string;
  /** Run in this namespace (the node's "host" namespace). */
  host?: Netns;
  /** The binary to run (default dist/ohno). */
  bin?: string;
  /** Extra environment (e.g. OHNO_LOG_FILE). */
  env?: Record<string, string>;
  /** A command the plugin runs under, e.g. `["unshare", "--mount", …]`: the plugin is its last argument. */
  wrap?: string[];
}

export interface CniReply {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as one JSON document, or undefined when stdout is empty. */
  json: Record<string, unknown> | undefined;
}

/**
 * Runs a CNI plugin once. Throws when stdout holds anything but zero or one JSON
 * document — that is a protocol violation in itself.
 */
export async function callCni(c: CniCall): Promise<CniReply> {
  const env: Record<string, string> = {
    CNI_COMMAND: c.command,
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
    ...(c.containerID !== undefined ? { CNI_CONTAINERID: c.containerID } : {}),
    ...(c.netns !== undefined ? { CNI_NETNS: c.netns } : {}),
    ...(c.ifname !== undefined ? { CNI_IFNAME: c.ifname } : {}),
    ...(c.args !== undefined ? { CNI_ARGS: c.args } : {}),
    CNI_PATH: c.path ?? `${REPO}/dist:${REF_CNI_DIR}`,
    // Never the machine's default log file: tests log under tests/.out.
    OHNO_LOG_FILE: `${REPO}/tests/.out/cni.log`,
    ...c.env,
  };
  const stdinText = typeof c.config === "string" ? c.config : JSON.stringify(c.config);
  const bin = c.bin ?? OHNO;
  const [cmd, ...args] = c.wrap?.length ? [...c.wrap, bin] : [bin];
  const r = await runCommand(c.host, cmd!, { args, env, clearEnv: true, stdinText });
  const text = r.stdout.trim();
  let json: Record<string, unknown> | undefined;
  if (text !== "") {
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(
        `stdout is not exactly one JSON document:\n${r.stdout}\nstderr:\n${r.stderr}`,
      );
    }
  }
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, json };
}
