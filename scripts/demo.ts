/**
 * `deno task demo`: the README's main job — `dist/ohno lab demo`, run as a person would:
 * a 2-node cluster in network namespaces, four pods, pings within and across nodes,
 * masquerade to an outside host, the address table, then teardown.
 * @module
 */

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const child = new Deno.Command(`${root}/dist/ohno`, {
  args: ["lab", "demo", "--name", "demo", ...Deno.args],
  stdin: "null",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
Deno.exit((await child.status).code);
