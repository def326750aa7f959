// deno-lint-ignore-file no-console -- a tiny test program: its output is its interface
/**
 * A parent that never reaps: runs one command as a child subreaper
 * (prctl PR_SET_CHILD_SUBREAPER), so the processes that command leaves running become
 * this program's children, and stay zombies when they die until it exits. Tests use
 * it to hold a killed process in the zombie state for as long as they need, where a
 * real init reaps after a moment.
 *
 *   deno run -A subreaper.ts CMD ARGS…   runs CMD, prints its result as one JSON line,
 *                                        then holds its orphans until stdin closes
 * @module
 */

const SELF = new URL(import.meta.url).pathname;
const PR_SET_CHILD_SUBREAPER = 36;

async function main(cmd: string, args: string[]): Promise<void> {
  const libc = Deno.dlopen("libc.so.6", {
    prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  });
  if (libc.symbols.prctl(PR_SET_CHILD_SUBREAPER, 1n, 0n, 0n, 0n) !== 0) {
    throw new Error("prctl(PR_SET_CHILD_SUBREAPER) failed");
  }
  const out = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  const dec = new TextDecoder();
  console.log(JSON.stringify({
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  }));
  // Deno waits only for the children it spawned: adopted orphans are never reaped.
  await Deno.stdin.readable.pipeTo(new WritableStream());
}

if (import.meta.main) await main(Deno.args[0]!, Deno.args.slice(1));

/** A command run under a parent that never reaps; dispose to let its orphans go. */
export interface Subreaper extends AsyncDisposable {
  /** The command's result. */
  code: number;
  stdout: string;
  stderr: string;
}

export async function runUnderSubreaper(cmd: string, args: string[]): Promise<Subreaper> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-prompt", SELF, cmd, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const dispose = async () => {
    await stdin.close().catch(() => {});
    await child.status;
  };
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`subreaper exited before ${cmd} finished`);
      seen += value;
    }
    await reader.cancel().catch(() => {});
    const r = JSON.parse(seen) as { code: number; stdout: string; stderr: string };
    return { ...r, [Symbol.asyncDispose]: dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}
