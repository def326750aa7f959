// deno-lint-ignore-file no-console -- a build script reports on stderr
/**
 * `deno task build`: produces dist/ohno and dist/ohno-ipam (a symlink to it).
 *
 * - compile mode: `deno compile` into a self-contained binary. Needs the Deno runtime
 *   (denort): given by `DENORT_BIN`, or already in the Deno cache. Release builds.
 * - launcher mode: a small shell script that runs the same main.ts with the pinned Deno,
 *   all permissions, no prompts, cached modules only, and passes its `$0` through as
 *   `OHNO_ARGV0` (so `ohno-ipam` still selects the IPAM face).
 *
 * `--mode auto` (default) compiles when it can and writes the launcher otherwise. Tests,
 * the lab, install and benchmarks all use dist/ohno, whichever it is.
 * @module
 */

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const dist = `${root}/dist`;

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : Deno.args.find((a) => a.startsWith(`--${name}=`))?.split(
    "=",
  )[1];
}

function denoDir(): string {
  const d = Deno.env.get("DENO_DIR");
  if (d) return d;
  return `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
}

function denortAvailable(): string | undefined {
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) {
    try {
      Deno.statSync(bin);
      return `DENORT_BIN=${bin}`;
    } catch {
      return undefined;
    }
  }
  const dir = `${denoDir()}/dl/release/v${Deno.version.deno}`;
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (e.name.startsWith("denort-")) return `${dir}/${e.name}`;
    }
  } catch {
    // no cache
  }
  return undefined;
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

async function compile(): Promise<void> {
  const tmp = `${dist}/.ohno.compile`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--quiet",
      "-A",
      "--no-prompt",
      "--frozen",
      "--config",
      `${root}/deno.json`,
      "--output",
      tmp,
      `${root}/main.ts`,
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("deno compile failed");
  Deno.renameSync(tmp, `${dist}/ohno`);
}

function writeLauncher(): void {
  const script = `#!/bin/sh
# ohno development launcher, written by \`deno task build\` (scripts/build.ts).
# Runs ${root}/main.ts with the pinned Deno ${Deno.version.deno}; \`deno compile\` replaces this
# file with a self-contained binary where the Deno runtime can be had.
DENO_DIR=${shellQuote(denoDir())} DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 OHNO_ARGV0="$0" \\
exec ${shellQuote(Deno.execPath())} run --quiet --allow-all --no-prompt --cached-only --frozen \\
  --config ${shellQuote(`${root}/deno.json`)} ${shellQuote(`${root}/main.ts`)} "$@"
`;
  const tmp = `${dist}/.ohno.tmp`;
  Deno.writeTextFileSync(tmp, script, { mode: 0o755 });
  Deno.chmodSync(tmp, 0o755);
  Deno.renameSync(tmp, `${dist}/ohno`);
}

function linkIpamFace(): void {
  const link = `${dist}/ohno-ipam`;
  try {
    Deno.removeSync(link);
  } catch {
    // absent
  }
  Deno.symlinkSync("ohno", link);
}

const mode = arg("mode") ?? Deno.env.get("OHNO_BUILD_MODE") ?? "auto";
if (!["auto", "compile", "launcher"].includes(mode)) {
  console.error(`build: unknown --mode ${mode} (auto, compile, launcher)`);
  Deno.exit(2);
}
Deno.mkdirSync(dist, { recursive: true });
const runtime = denortAvailable();
if (mode === "compile" || (mode === "auto" && runtime)) {
  if (!runtime && mode === "compile") {
    console.error(
      "build: warning: no DENORT_BIN and no cached runtime; deno compile will try to download it",
    );
  }
  await compile();
  console.error(`build: dist/ohno compiled (runtime: ${runtime ?? "downloaded"})`);
} else {
  writeLauncher();
  console.error(
    "build: dist/ohno is a launcher (no Deno runtime for compile; see scripts/build.ts)",
  );
}
linkIpamFace();
