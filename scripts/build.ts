// deno-lint-ignore-file no-console -- a build script reports on stderr
/**
 * `deno task build`: produces dist/ohno and dist/ohno-ipam (a symlink to it).
 *
 * - compile mode: `deno compile` into a self-contained binary. Needs the Deno runtime
 *   (denort): given by `DENORT_BIN`, or already in the Deno cache. Release builds.
 * - launcher mode: main.ts bundled (code-split) into dist/bundle/, and dist/ohno a small
 *   shell script that runs it with the pinned Deno, all permissions, no prompts, cached
 *   modules only, under the project's lockfile (the npm packages left out of the bundle
 *   resolve to their locked versions without the registry), passing its `$0` through as
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

/**
 * V8 flags for every mode. A young generation of at most 1 MB per semi-space: the agent
 * is long-running and allocates little except in bursts, whose garbage otherwise stays
 * as committed young-generation pages. Measured with `./dev bench scale`: one agent with
 * 1,000 peers settles at 97-104 MB instead of 117-125 MB; a CNI call allocates far less
 * than 1 MB, so the plugin is unaffected.
 */
export const V8_FLAGS = "--max-semi-space-size=1";

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Runs this Deno's `verb` on main.ts, quietly, under the project's config and lockfile,
 * with `flags`; its output is passed through. Throws when it fails.
 */
async function denoOnMain(verb: "compile" | "bundle", flags: string[]): Promise<void> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      verb,
      "--quiet",
      "--frozen",
      "--config",
      `${root}/deno.json`,
      ...flags,
      `${root}/main.ts`,
    ],
    stdout: "inherit",
    stderr: "inherit",
  });
  if (!(await cmd.output()).success) throw new Error(`deno ${verb} failed`);
}

async function compile(): Promise<void> {
  const tmp = `${dist}/.ohno.compile`;
  await denoOnMain("compile", ["-A", `--v8-flags=${V8_FLAGS}`, "--no-prompt", "--output", tmp]);
  Deno.renameSync(tmp, `${dist}/ohno`);
}

/**
 * Bundles main.ts with its npm dependencies into dist/bundle/ (code-split: CNI mode loads
 * only the chunks of the CNI verb it runs, never the CLI, etcd or Kubernetes code).
 * Running one bundle skips Deno's module graph and npm resolution at start-up, which
 * roughly halves the cost of every CNI call (see `deno task bench startup cni`).
 */
/**
 * npm packages that cannot be bundled (they read files next to their own sources, e.g.
 * gRPC's `__dirname`): left as imports and pointed at their exact npm versions, which
 * Deno loads from its cache. Only the daemon and the admin CLI import them. ipam/etcd.ts
 * also imports etcd3's gRPC directly: it must be the very module etcd3 loads (gRPC checks
 * its credentials with `instanceof`), so it stays external too.
 */
const EXTERNAL = ["etcd3", "@grpc/grpc-js"];

/**
 * The bundler's CommonJS runtime makes `require` with `createRequire` from `node:module`
 * at load time, in the chunk every entry imports. Importing `node:module` starts Deno's
 * Node compatibility layer, about 25 ms on every CNI call, although only the CLI's
 * bundled packages (commander, yaml) ever call `require`, and only for Node built-ins.
 * The rewrite makes `require` fetch built-ins on first use instead.
 */
const EAGER_REQUIRE =
  /import \{ createRequire as (\w+) \} from "node:module";\s*var __require = \1\(import\.meta\.url\);/;
const LAZY_REQUIRE = `var __require = (id) => {
  const m = globalThis.process?.getBuiltinModule?.(id);
  if (m === undefined) throw new Error(\`ohno bundle: cannot require \${id}\`);
  return m;
};`;

/**
 * Deno builds a module graph before it runs anything, and it follows every dynamic
 * `import("./chunk.js")` whose specifier is a plain string: a CNI VERSION then read and
 * parsed all of dist/bundle (the agent's, the CLI's and etcd's chunks, about 800 kB) and
 * resolved gRPC's npm package, although it runs none of it. A specifier the graph cannot
 * read (a template with an expression) is loaded only when the import runs. Measured on
 * VERSION (`./dev bench startup`): 48 ms → 41 ms, against 34 ms for an empty Deno program.
 * npm specifiers stay literal: the graph must resolve those from the lockfile.
 */
const CHUNK_IMPORT = /import\("(\.\/[\w.-]+\.js)"\)/g;
const LAZY_CHUNK_IMPORT = 'import(`${"$1"}`)';

async function bundle(): Promise<void> {
  const tmp = `${dist}/.bundle.tmp`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await denoOnMain("bundle", [
    "--platform",
    "deno",
    "--code-splitting",
    ...EXTERNAL.flatMap((e) => ["--external", e]),
    "--outdir",
    tmp,
  ]);
  const imports = (JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)) as {
    imports: Record<string, string>;
  }).imports;
  for (const e of Deno.readDirSync(tmp)) {
    if (!e.name.endsWith(".js")) continue;
    const file = `${tmp}/${e.name}`;
    let text = Deno.readTextFileSync(file).replace(EAGER_REQUIRE, LAZY_REQUIRE)
      .replace(CHUNK_IMPORT, LAZY_CHUNK_IMPORT);
    if (text.includes(`from "node:module"`)) {
      throw new Error(`${e.name} still imports node:module: the bundler's runtime changed`);
    }
    for (const name of EXTERNAL) {
      const target = imports[name];
      if (!target) throw new Error(`deno.json has no import for external package ${name}`);
      text = text.replaceAll(`from "${name}"`, `from "${target}"`)
        .replaceAll(`import("${name}")`, `import("${target}")`);
    }
    Deno.writeTextFileSync(file, text);
  }
  await Deno.remove(`${dist}/bundle`, { recursive: true }).catch(() => {});
  Deno.renameSync(tmp, `${dist}/bundle`);
}

function writeLauncher(): void {
  const config = shellQuote(`${root}/deno.json`);
  const bundle = shellQuote(`${dist}/bundle/main.js`);
  const script = `#!/bin/sh
# ohno development launcher, written by \`deno task build\` (scripts/build.ts).
# Runs the bundle of ${root}/main.ts (dist/bundle/) with the pinned Deno ${Deno.version.deno};
# \`deno compile\` replaces this file with a self-contained binary where the Deno runtime
# can be had.
DENO_DIR=${shellQuote(denoDir())} DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 OHNO_ARGV0="$0" \\
exec ${shellQuote(Deno.execPath())} run --quiet --allow-all --no-prompt --cached-only \\
  --v8-flags=${V8_FLAGS} --config ${config} --frozen ${bundle} "$@"
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
  await bundle();
  writeLauncher();
  console.error(
    "build: dist/ohno is a launcher (no Deno runtime for compile; see scripts/build.ts)",
  );
}
linkIpamFace();
