/**
 * Installing the plugin on the host: the binary into the CNI bin dir and the conflist
 * into the CNI conf dir, each written to a temporary file and renamed into place — a
 * runtime executing the old binary never sees "text file busy", and never reads half a
 * conflist. Unchanged files are left alone. The conflist is named to sort first
 * (`10-ohno.conflist`), since runtimes use the lexicographically first file.
 * @module
 */

export interface ConflistOptions {
  /** The CNI network name. */
  network: string;
  bridge: string;
  mtu: number;
  socket: string;
  /** The plugin's log file on the host. */
  logFile: string;
  /**
   * The CNI versions of the reference portmap plugin (hostPort support) installed next to
   * ohno (its VERSION answer), which is then chained; undefined when it is not installed.
   */
  portmap?: string[];
}

/** The versions ohno's conflist offers, lowest first (CNI 1.1 adds GC and STATUS). */
export const CONFLIST_VERSIONS = ["1.0.0", "1.1.0"];

/** The network configuration list the agent installs. */
export function conflist(o: ConflistOptions): Record<string, unknown> {
  const plugins: Record<string, unknown>[] = [{
    type: "ohno",
    bridge: o.bridge,
    mtu: o.mtu,
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: false, // the agent masquerades, per node, in its own nftables table
    logFile: o.logFile,
    ipam: { type: "ohno", daemonSocket: o.socket },
  }];
  // Only versions every chained plugin speaks: a runtime picks the highest one it knows
  // (libcni 1.3 takes 1.1.0), and a plugin given a version it lacks fails the whole ADD.
  let versions = CONFLIST_VERSIONS;
  const portmap = o.portmap?.filter((v) => versions.includes(v)) ?? [];
  if (portmap.length) {
    plugins.push({ type: "portmap", capabilities: { portMappings: true }, snat: true });
    versions = portmap;
  }
  // cniVersion 1.0.0 for libcni 1.1 (containerd 1.6/1.7, CRI-O, podman 4), which reads only it.
  return { cniVersion: versions[0], cniVersions: versions, name: o.network, plugins };
}

function sameContent(path: string, data: Uint8Array): boolean {
  try {
    const old = Deno.readFileSync(path);
    return old.length === data.length && old.every((b, i) => b === data[i]);
  } catch {
    return false;
  }
}

/** Writes `data` to `path` via a temp file + rename; false when it was already there. */
function writeAtomically(path: string, data: Uint8Array, mode: number): boolean {
  if (sameContent(path, data)) return false;
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  Deno.mkdirSync(dir, { recursive: true });
  const tmp = `${dir}/.${path.slice(dir.length + 1)}.tmp-${Deno.pid}`;
  try {
    Deno.writeFileSync(tmp, data, { mode });
    Deno.chmodSync(tmp, mode);
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch {
      // not created
    }
    throw e;
  }
  return true;
}

export interface InstallResult {
  binary: boolean;
  conflist: boolean;
}

/** The source is a development launcher script, not a compiled ohno. */
export class LauncherRefusedError extends Error {
  override name = "LauncherRefusedError";
}

/**
 * Installs `source` as `<binDir>/ohno` with `ohno-ipam` linked to it (what a DaemonSet's
 * init container does: `ohno install`). Returns whether the binary changed.
 *
 * A development `dist/ohno` is a launcher script that runs Deno on a checkout's bundle by
 * absolute paths: on a host without that checkout every CNI call would fail. It is
 * refused unless `allowLauncher` (the lab, whose nodes share the checkout).
 */
export function installBinary(source: string, binDir: string, allowLauncher = false): boolean {
  const data = Deno.readFileSync(source);
  if (!allowLauncher && data[0] === 0x23 && data[1] === 0x21) { // "#!"
    throw new LauncherRefusedError(
      `${source} is a launcher script (a development build), not a compiled ohno: it runs ` +
        `only where its checkout is; build with deno compile (DENORT_BIN), or allow it ` +
        `explicitly (--allow-launcher, OHNO_ALLOW_LAUNCHER=1)`,
    );
  }
  const binary = writeAtomically(`${binDir}/ohno`, data, 0o755);
  const link = `${binDir}/ohno-ipam`;
  let linkOk = false;
  try {
    linkOk = Deno.readLinkSync(link) === "ohno";
  } catch {
    // missing or not a link
  }
  if (!linkOk) {
    const tmp = `${binDir}/.ohno-ipam.tmp-${Deno.pid}`;
    try {
      Deno.removeSync(tmp);
    } catch {
      // none
    }
    Deno.symlinkSync("ohno", tmp);
    Deno.renameSync(tmp, link);
  }
  return binary;
}

/**
 * Installs `source` as `<binDir>/ohno` (with `ohno-ipam` linked to it) and writes the
 * conflist `<confDir>/<conflistName>`. Returns what changed.
 */
export function installPlugin(o: {
  source: string;
  binDir: string;
  confDir: string;
  conflistName: string;
  conflist: Record<string, unknown>;
  /** Install a launcher script too (see {@link installBinary}). */
  allowLauncher?: boolean;
}): InstallResult {
  const binary = installBinary(o.source, o.binDir, o.allowLauncher);
  const text = JSON.stringify(o.conflist, null, 2) + "\n";
  const conflistChanged = writeAtomically(
    `${o.confDir}/${o.conflistName}`,
    new TextEncoder().encode(text),
    0o644,
  );
  return { binary, conflist: conflistChanged };
}

/** Removes the conflist (so runtimes stop using ohno); the binary stays for DELs. */
export function uninstallConflist(confDir: string, conflistName: string): boolean {
  try {
    Deno.removeSync(`${confDir}/${conflistName}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * The network configurations in `confDir` that a runtime would take before ours: libcni
 * reads `*.conf`, `*.conflist` and `*.json` in name order and containerd, CRI-O and
 * podman use the first. Empty when ours is first (or the directory cannot be read).
 */
export function conflistsBefore(confDir: string, ours: string): string[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync(confDir)]
      .filter((e) => !e.isDirectory && /\.(conflist|conf|json)$/.test(e.name))
      .map((e) => e.name);
  } catch {
    return [];
  }
  return names.filter((n) => n !== ours && n < ours).sort();
}
