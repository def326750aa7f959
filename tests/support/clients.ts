/**
 * Real CNI clients for tests (see ../shared/CLIENTS.md): podman with its CNI backend and
 * containerd's `ctr run --cni`, each with private state in a temp dir and run inside a
 * "host" namespace of the test (only the network namespace is entered, so cgroup mounts
 * stay visible to runc), using a busybox image built from busybox-static.
 * @module
 */

import { type Netns, runCommand } from "../../netns/netns.ts";
import { REF_CNI_DIR, REPO } from "./ohno.ts";

export function which(bin: string): string | undefined {
  for (const dir of ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]) {
    try {
      if (Deno.statSync(`${dir}/${bin}`).isFile) return `${dir}/${bin}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why the client tests cannot run here, or undefined when they can. */
export function clientsMissing(): string | undefined {
  const missing = ["podman", "runc", "containerd", "ctr", "busybox", "unshare"].filter((b) =>
    !which(b)
  );
  return missing.length ? `not installed: ${missing.join(", ")}` : undefined;
}

async function must(r: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const out = await r;
  if (out.code !== 0) throw new Error(`${what} failed (${out.code}): ${out.stdout}${out.stderr}`);
  return out.stdout;
}

/** A busybox root filesystem as a tar (for `podman import`). */
export async function busyboxTar(dir: string): Promise<string> {
  const root = `${dir}/rootfs`;
  Deno.mkdirSync(`${root}/bin`, { recursive: true });
  Deno.copyFileSync(which("busybox")!, `${root}/bin/busybox`);
  Deno.chmodSync(`${root}/bin/busybox`, 0o755);
  for (const a of ["sh", "ip", "ping", "sleep", "cat", "ls", "echo"]) {
    Deno.symlinkSync("busybox", `${root}/bin/${a}`);
  }
  const tar = `${dir}/busybox.tar`;
  await must(runCommand(undefined, "tar", { args: ["-C", root, "-cf", tar, "."] }), "tar");
  return tar;
}

export interface Podman {
  run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  image: string;
}

/** podman with private storage and a private CNI config dir holding `conflist`. */
export async function podman(
  dir: string,
  host: Netns,
  conflist: Record<string, unknown>,
): Promise<Podman> {
  Deno.mkdirSync(`${dir}/net`, { recursive: true });
  Deno.writeTextFileSync(`${dir}/net/${conflist.name}.conflist`, JSON.stringify(conflist));
  const conf = `${dir}/containers.conf`;
  Deno.writeTextFileSync(
    conf,
    `[network]
network_backend = "cni"
cni_plugin_dirs = ["${REPO}/dist", "${REF_CNI_DIR}"]
network_config_dir = "${dir}/net"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${dir}/events.log"
runtime = "runc"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
`,
  );
  const base = ["--root", `${dir}/root`, "--runroot", `${dir}/runroot`, "--storage-driver", "vfs"];
  const run = (args: string[]) =>
    runCommand(host, "podman", {
      args: [...base, ...args],
      env: { CONTAINERS_CONF: conf, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    });
  const image = "localhost/ohno-busybox:latest";
  await must(run(["import", await busyboxTar(dir), image]), "podman import");
  return { run, image };
}

export interface Containerd extends AsyncDisposable {
  /** Runs `ctr` inside the host namespace and a private mount namespace whose
   * /etc/cni/net.d, /opt/cni/bin and /var/lib/cni are the test's own. */
  ctr(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  image: string;
}

/** containerd with root, state and socket in `dir`, the CRI plugin off. */
export async function containerd(
  dir: string,
  host: Netns,
  conflist: Record<string, unknown>,
  imageArchive: string,
): Promise<Containerd> {
  const d = `${dir}/containerd`;
  for (const sub of ["cniconf", "cnibin", "cnicache", "opt"]) {
    Deno.mkdirSync(`${d}/${sub}`, { recursive: true });
  }
  Deno.writeTextFileSync(`${d}/cniconf/10-${conflist.name}.conflist`, JSON.stringify(conflist));
  Deno.symlinkSync(`${REPO}/dist/ohno`, `${d}/cnibin/ohno`);
  Deno.symlinkSync(`${REF_CNI_DIR}/loopback`, `${d}/cnibin/loopback`);
  const sock = `${d}/containerd.sock`;
  const cfg =
    (await must(runCommand(undefined, "containerd", { args: ["config", "default"] }), "config"))
      .replace(/^root = .*$/m, `root = "${d}/root"`)
      .replace(/^state = .*$/m, `state = "${d}/state"`)
      .replace(/^disabled_plugins = .*$/m, `disabled_plugins = ["io.containerd.grpc.v1.cri"]`)
      .replace(/address = "\/run\/containerd\/containerd.sock"/, `address = "${sock}"`)
      .replace(/path = "\/opt\/containerd"/, `path = "${d}/opt"`);
  Deno.writeTextFileSync(`${d}/config.toml`, cfg);
  const daemon = new Deno.Command("containerd", {
    args: ["--config", `${d}/config.toml`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const ctrArgs = ["-a", sock, "-n", "ohnotest"];
  const plain = (args: string[]) => runCommand(undefined, "ctr", { args: [...ctrArgs, ...args] });
  for (let i = 0; i < 100; i++) {
    if ((await plain(["version"])).code === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const image = "localhost/ohno-busybox:latest";
  await must(
    plain([
      "images",
      "import",
      "--snapshotter",
      "native",
      "--base-name",
      "localhost/ohno-busybox",
      imageArchive,
    ]),
    "ctr images import",
  );
  const script = [
    "mkdir -p /etc/cni/net.d /opt/cni/bin /var/lib/cni",
    `mount --bind ${d}/cniconf /etc/cni/net.d`,
    `mount --bind ${d}/cnibin /opt/cni/bin`,
    `mount --bind ${d}/cnicache /var/lib/cni`,
    `exec ctr ${ctrArgs.join(" ")} "$@"`,
  ].join(" && ");
  return {
    image,
    ctr: (args) =>
      runCommand(host, "unshare", {
        args: ["-m", "--propagation", "private", "sh", "-c", script, "ctr", ...args],
      }),
    async [Symbol.asyncDispose]() {
      await plain(["images", "rm", image]).catch(() => {});
      try {
        daemon.kill("SIGTERM");
      } catch {
        // gone
      }
      await daemon.status;
      await runCommand(undefined, "umount", { args: ["-R", `${d}/root`] }).catch(() => {});
      // containerd makes a cgroup named after the namespace in every hierarchy: gone too.
      for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
        try {
          Deno.removeSync(`/sys/fs/cgroup/${e.name}/ohnotest`);
        } catch {
          // none there, or not empty (a container still running: reported by its test)
        }
      }
      try {
        Deno.removeSync("/sys/fs/cgroup/ohnotest");
      } catch {
        // cgroup v1, or none
      }
    },
  };
}
