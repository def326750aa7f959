/**
 * The Kubernetes lab's images, without a registry (lab/kube.ts): OCI archives of a pause
 * image, a busybox test image and the ohno image, for `ctr images import`.
 * @module
 */

import { mustRun } from "./kubepki.ts";

/** Images the lab imports into every node (names as a pod spec gives them). */
export const LAB_IMAGES = {
  pause: "docker.io/ohno/pause:e2e",
  busybox: "docker.io/ohno/busybox:e2e",
  ohno: "docker.io/library/ohno:0.1.0",
} as const;

async function sha256(file: string): Promise<{ digest: string; size: number }> {
  const out = await mustRun("sha256sum", [file]);
  return { digest: `sha256:${out.split(" ")[0]}`, size: Deno.statSync(file).size };
}

async function writeBlob(blobs: string, data: string): Promise<{ digest: string; size: number }> {
  const tmp = `${blobs}/.tmp`;
  Deno.writeTextFileSync(tmp, data);
  const d = await sha256(tmp);
  Deno.renameSync(tmp, `${blobs}/${d.digest.slice(7)}`);
  return d;
}

/**
 * Writes an OCI image archive of the directory `rootfs` (one uncompressed layer) named
 * `ref`, with `config` (Entrypoint, Cmd, Env) — what `ctr images import` takes.
 */
async function ociArchive(
  rootfs: string,
  ref: string,
  config: Record<string, unknown>,
  out: string,
): Promise<void> {
  const work = `${out}.d`;
  await Deno.remove(work, { recursive: true }).catch(() => {});
  const blobs = `${work}/blobs/sha256`;
  Deno.mkdirSync(blobs, { recursive: true });
  const layerTmp = `${blobs}/.layer`;
  await mustRun("tar", [
    "--numeric-owner",
    "--owner=0",
    "--group=0",
    "-C",
    rootfs,
    "-cf",
    layerTmp,
    ".",
  ]);
  const layer = await sha256(layerTmp);
  Deno.renameSync(layerTmp, `${blobs}/${layer.digest.slice(7)}`);
  const cfg = await writeBlob(
    blobs,
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config,
      rootfs: { type: "layers", diff_ids: [layer.digest] },
    }),
  );
  const manifest = await writeBlob(
    blobs,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cfg },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
    }),
  );
  Deno.writeTextFileSync(`${work}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  Deno.writeTextFileSync(
    `${work}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifest,
        annotations: {
          "io.containerd.image.name": ref,
          "org.opencontainers.image.ref.name": ref.split(":").pop(),
        },
      }],
    }),
  );
  await mustRun("tar", ["-C", work, "-cf", out, "oci-layout", "index.json", "blobs"]);
  await Deno.remove(work, { recursive: true });
}

/** Copies `file` into `rootfs` at the same path, with the shared libraries ldd names. */
async function copyWithLibs(rootfs: string, file: string): Promise<void> {
  const files = new Set([file]);
  const ldd = await new Deno.Command("ldd", { args: [file], stdout: "piped", stderr: "null" })
    .output();
  for (const line of new TextDecoder().decode(ldd.stdout).split("\n")) {
    const m = line.match(/(\/\S+) \(0x/);
    if (m?.[1]) files.add(m[1]);
  }
  for (const f of files) {
    const real = Deno.realPathSync(f);
    const to = `${rootfs}${f}`;
    Deno.mkdirSync(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    Deno.copyFileSync(real, to);
    Deno.chmodSync(to, Deno.statSync(real).mode ?? 0o755);
  }
}

/** The busybox test image's and the pause image's rootfs, and ohno's (see Dockerfile). */
export async function buildImages(dir: string, bin: string, ohno: string): Promise<string[]> {
  const images = `${dir}/images`;
  Deno.mkdirSync(images, { recursive: true });
  const out: string[] = [];

  const pause = `${images}/pause.rootfs`;
  Deno.mkdirSync(pause, { recursive: true });
  Deno.copyFileSync(`${bin}/pause`, `${pause}/pause`);
  Deno.chmodSync(`${pause}/pause`, 0o755);
  await ociArchive(pause, LAB_IMAGES.pause, { Entrypoint: ["/pause"] }, `${images}/pause.tar`);
  out.push(`${images}/pause.tar`);

  const bb = `${images}/busybox.rootfs`;
  Deno.mkdirSync(`${bb}/bin`, { recursive: true });
  Deno.mkdirSync(`${bb}/tmp`, { recursive: true });
  Deno.copyFileSync("/bin/busybox", `${bb}/bin/busybox`);
  Deno.chmodSync(`${bb}/bin/busybox`, 0o755);
  for (
    const a of ["sh", "ping", "ping6", "sleep", "ip", "ifconfig", "cat", "hostname", "wget", "nc"]
  ) {
    Deno.symlinkSync("busybox", `${bb}/bin/${a}`);
  }
  await ociArchive(bb, LAB_IMAGES.busybox, {
    Entrypoint: ["/bin/sleep", "100000000"],
    Env: ["PATH=/bin"],
  }, `${images}/busybox.tar`);
  out.push(`${images}/busybox.tar`);

  // The ohno image: the layout deploy/kubernetes/Dockerfile produces (/usr/local/bin/ohno,
  // nft for masquerade). A development dist/ohno is a launcher script running the pinned
  // Deno on this checkout's bundle, so the image carries those paths too; the agent
  // installs the same launcher on the node, where the checkout is visible as well.
  const root = `${images}/ohno.rootfs`;
  Deno.mkdirSync(`${root}/usr/local/bin`, { recursive: true });
  Deno.mkdirSync(`${root}/bin`, { recursive: true });
  Deno.mkdirSync(`${root}/tmp`, { recursive: true, mode: 0o1777 });
  Deno.copyFileSync(ohno, `${root}/usr/local/bin/ohno`);
  Deno.chmodSync(`${root}/usr/local/bin/ohno`, 0o755);
  Deno.copyFileSync("/bin/busybox", `${root}/bin/sh`);
  Deno.chmodSync(`${root}/bin/sh`, 0o755);
  await copyWithLibs(root, "/usr/sbin/nft");
  const launcher = Deno.readTextFileSync(ohno);
  if (launcher.startsWith("#!")) {
    const paths = [...launcher.matchAll(/'(\/[^']+)'/g)].map((m) => m[1]!);
    for (const p of paths) {
      const st = Deno.statSync(p);
      if (st.isDirectory) {
        Deno.mkdirSync(`${root}${p}`, { recursive: true });
        await mustRun("cp", ["-a", `${p}/.`, `${root}${p}/`]);
      } else {
        await copyWithLibs(root, p);
      }
    }
    const bundle = `${ohno.slice(0, ohno.lastIndexOf("/"))}/bundle`;
    Deno.mkdirSync(`${root}${bundle}`, { recursive: true });
    await mustRun("cp", ["-a", `${bundle}/.`, `${root}${bundle}/`]);
    const lock = paths.find((p) => p.endsWith("/deno.json"))?.replace(/deno\.json$/, "deno.lock");
    if (lock) Deno.copyFileSync(lock, `${root}${lock}`);
  }
  await ociArchive(root, LAB_IMAGES.ohno, {
    Entrypoint: ["/usr/local/bin/ohno"],
    Cmd: ["daemon"],
    Env: [
      "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      // A launcher runs on the lab's nodes, which share this checkout (docs/daemon.md).
      ...(launcher.startsWith("#!") ? ["OHNO_ALLOW_LAUNCHER=1"] : []),
    ],
  }, `${images}/ohno.tar`);
  out.push(`${images}/ohno.tar`);
  for (const r of ["pause", "busybox", "ohno"]) {
    await Deno.remove(`${images}/${r}.rootfs`, { recursive: true });
  }
  return out;
}
