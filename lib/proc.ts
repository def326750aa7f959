/**
 * The state letter of process `pid` from `/proc/<pid>/stat` (`R`, `S`, `D`, `T`, `Z`…),
 * or undefined when there is no such process.
 */
export function processState(pid: number): string | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // "pid (comm) S …": comm may hold spaces and parentheses; the state follows the last ")".
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ", 1)[0] || undefined;
}

/**
 * Whether process `pid` runs. A zombie does not: it was killed or exited and only waits
 * for its parent to reap it, yet `kill(pid, 0)` and `/proc/<pid>` still find it.
 */
export function processAlive(pid: number): boolean {
  const state = processState(pid);
  return state !== undefined && state !== "Z" && state !== "X";
}
